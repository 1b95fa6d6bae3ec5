"""Outbound URL safety: http(s) only, no credentials, and no private or reserved address unless its network is
allowed — when a subscription is saved and again when a delivery is sent."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.db import unit_of_work
from crm_core.errors import PermissionDenied, SettingsError, ValidationFailed
from crm_core.settings import load_settings
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, Actor
from crm_core.webhooks.errors import UnsafeWebhookUrl
from crm_core.webhooks.sender import WebhookSender
from crm_core.webhooks.service import create_subscription, update_subscription
from crm_core.webhooks.urls import AddressPolicy, check_url, parse_networks
from tests.webhooks.conftest import LOCAL, subscribe
from tests.webhooks.receiver import Receiver

PUBLIC_ONLY = AddressPolicy()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "http://user:pw@example.com/",
        "http:///no-host",
        "http://example.com/a b",
        "http://example.com/\r\nX-Injected: 1",
        "",
    ],
)
async def test_refused_shapes(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrl):
        await check_url(url, LOCAL)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.10",
        "172.16.5.4",
        "169.254.169.254",
        "[::1]",
        "[fd00::1]",
        "0.0.0.0",
        "[::ffff:127.0.0.1]",
        "224.0.0.1",
    ],
)
async def test_private_and_reserved_addresses_are_refused_by_default(address: str) -> None:
    with pytest.raises(UnsafeWebhookUrl, match="CRM_WEBHOOK_ALLOWED_NETWORKS"):
        await check_url(f"http://{address}:8080/hook", PUBLIC_ONLY)


async def test_a_name_that_resolves_to_loopback_is_refused() -> None:
    with pytest.raises(UnsafeWebhookUrl):
        await check_url("http://localhost:9/hook", PUBLIC_ONLY)


async def test_an_allowed_network_and_a_public_address_pass() -> None:
    assert await check_url("http://127.0.0.1:9/hook", LOCAL) == "http://127.0.0.1:9/hook"
    assert await check_url(" https://93.184.216.34/hook ", PUBLIC_ONLY) == "https://93.184.216.34/hook"
    assert parse_networks(" 10.0.0.0/8, 127.0.0.1 ,") == (
        *parse_networks("10.0.0.0/8"),
        *parse_networks("127.0.0.1/32"),
    )


def test_the_setting_is_checked_at_start_up() -> None:
    settings = load_settings({"CRM_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"})
    assert settings.webhook_address_policy == LOCAL
    with pytest.raises(SettingsError, match="CRM_WEBHOOK_ALLOWED_NETWORKS"):
        load_settings({"CRM_WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8,intranet"})


async def test_the_sender_refuses_at_send_time_what_the_policy_no_longer_allows(receiver: Receiver) -> None:
    """Saved while loopback was allowed; the setting changed since: nothing reaches the receiver."""
    sender = WebhookSender(PUBLIC_ONLY, timeout_s=2)
    try:
        outcome = await sender.send(url=receiver.url, secret="s", delivery_id="d", event_type="x", body="{}")
        by_name = await sender.send(
            url=receiver.url.replace("127.0.0.1", "localhost"), secret="s", delivery_id="d", event_type="x", body="{}"
        )
    finally:
        await sender.close()
    assert not outcome.delivered and outcome.status_code is None and "private or reserved" in (outcome.error or "")
    assert not by_name.delivered and by_name.status_code is None
    assert receiver.requests == []


async def test_only_admins_manage_subscriptions_and_bad_input_changes_nothing(
    sessions: async_sessionmaker[AsyncSession], receiver: Receiver
) -> None:
    supervisor = Actor(user_id=None, role=Role.SUPERVISOR)
    with pytest.raises(PermissionDenied):
        async with unit_of_work(sessions) as session:
            await create_subscription(
                session=session, actor=supervisor, name="x", url=receiver.url, events=["call.ended"], policy=LOCAL
            )
    subscription = await subscribe(sessions, receiver.url, ["call.ended"])
    for bad in ({"events": ["call.exploded"]}, {"events": []}, {"url": "ftp://x"}, {"max_in_flight": 0}, {"name": ""}):
        with pytest.raises(ValidationFailed):
            async with unit_of_work(sessions) as session:
                await update_subscription(
                    session=session,
                    actor=SYSTEM,
                    subscription_id=subscription.id,
                    policy=LOCAL,
                    **{"name": "Renamed", **bad},  # type: ignore[arg-type]
                )
    async with sessions() as session:
        from crm_core.webhooks.models import WebhookSubscription

        kept = await session.get(WebhookSubscription, subscription.id)
    assert kept is not None and (kept.name, kept.events, kept.url) == ("Receiver", ["call.ended"], receiver.url)
