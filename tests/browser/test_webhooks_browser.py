"""The admin's webhooks page in real headless Chromium with real data: a subscription made in the form (its secret
shown once, a hostile name shown as text), a ticket that the local receiver refuses until it is a dead letter,
the table showing status, attempts and the receiver's answer live, and Replay delivering it signed."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from agent_desktop.cli_webhooks import build_webhook_worker, stop_webhook_worker
from crm_core.tickets.service import create_ticket
from crm_core.users.service import SYSTEM
from tests.browser.test_desktop_browser import browser, sign_in  # noqa: F401  (fixtures)
from tests.desktop.live import XSS_NAME, LiveCenter, start_center
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.browser


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[LiveCenter]:
    live = await start_center(tmp_path, time_scale=0.05)
    # the receiver runs on this machine (allowed as an on-prem admin would), and retries are quick
    live.runtime.settings = live.runtime.settings.model_copy(
        update={
            "webhook_allowed_networks": "127.0.0.0/8",
            "webhook_backoff_s": 0.05,
            "webhook_backoff_max_s": 0.1,
            "webhook_retry_hours": 1.5 / 3600,
            "webhook_timeout_s": 2.0,
        }
    )
    worker = build_webhook_worker(live.runtime)
    worker.every_s = 0.05
    await worker.start(sole_worker=True)
    try:
        yield live
    finally:
        await stop_webhook_worker(worker)
        await live.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_subscribe_see_a_dead_letter_and_replay_it(
    browser: Browser,  # noqa: F811
    center: LiveCenter,
    receiver: Receiver,
) -> None:
    receiver.otherwise = "fail:500"
    page = await sign_in(browser, center, "root", "/admin/webhooks")
    await expect(page.locator("#webhook-subscriptions")).to_contain_text("No subscriptions yet.")
    await page.fill('input[name="name"]', XSS_NAME)
    await page.fill('input[name="url"]', receiver.url)
    await page.check('input[name="events"][value="ticket.created"]')
    await page.click('form.webhook-form button[type="submit"]')
    secret_line = page.locator("#webhook-secret code")
    await expect(secret_line).to_have_text(re.compile(r"^whsec_[A-Za-z0-9_-]{40,}$"))
    secret = await secret_line.inner_text()
    row = page.locator("#webhook-subscriptions tr[data-subscription]")
    await expect(row.locator("td").first).to_have_text(XSS_NAME)  # shown as text, never run
    await expect(row).to_contain_text("ticket.created")

    async with center.runtime.unit_of_work() as session:
        ticket = await create_ticket(session=session, actor=SYSTEM, subject="Invoice twice charged")
    delivery = page.locator("#webhook-deliveries tr[data-delivery]")
    await expect(delivery).to_have_count(1, timeout=15000)
    await expect(delivery).to_have_attribute("data-status", "dead", timeout=15000)  # the table refreshes itself
    await expect(delivery).to_contain_text("dead letter")
    await expect(delivery).to_contain_text("HTTP 500 Internal Server Error")
    tried = len(receiver.requests)
    assert tried >= 2
    await expect(delivery.locator("td").nth(3)).to_have_text(str(tried))
    await expect(page.locator("#webhook-deliveries a[data-count]").last).to_contain_text("dead letters (1)")

    receiver.otherwise = "ok"
    await delivery.locator("button", has_text="Replay").click()
    await expect(delivery).to_have_attribute("data-status", "delivered", timeout=15000)
    await expect(delivery.locator("td").nth(4)).to_have_text("200")
    await expect(delivery.locator("button")).to_have_count(0)
    assert page.dialogs == []  # type: ignore[attr-defined]

    last = receiver.requests[-1]
    assert last.answered == "ok" and len(receiver.requests) == tried + 1
    assert {r.delivery_id for r in receiver.requests} == {last.delivery_id}
    timestamp, mac = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", last.signature).groups()  # type: ignore[union-attr]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + last.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, mac)
    assert ticket.id.encode() in last.body
