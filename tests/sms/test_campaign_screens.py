"""The campaign and sender screens over real HTTP (the app served by hypercorn, SQLite, the CSRF header htmx sends):
an admin adds senders (bad input refused with one sentence), a marketer's campaign with an unregistered US long code
is refused with the reason and nothing is created, a CSV audience reports its bad rows on the draft, automations are
switched on and off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from crm_core.sms.models import SmsAutomation, SmsCampaign, SmsCampaignRecipient, SmsSender
from tests.sms.live import SmsCenter, start_sms_center


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[SmsCenter]:
    live = await start_sms_center(tmp_path, start_outbox=False)
    try:
        yield live
    finally:
        await live.stop()


async def post_form(center: SmsCenter, username: str, path: str, data: Any) -> tuple[int, dict[str, str], str]:
    http, token = await center.client(username)
    async with http.post(
        f"{center.base_url}{path}", data=data, headers={"X-CSRF-Token": token, "HX-Request": "true"}
    ) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, await response.text()


async def get_page(center: SmsCenter, username: str, path: str) -> str:
    http, _token = await center.client(username)
    async with http.get(f"{center.base_url}{path}") as response:
        assert response.status == 200
        return await response.text()


async def count(center: SmsCenter, model: Any) -> int:
    async with center.runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_senders_campaign_refusal_csv_report_and_automations(center: SmsCenter) -> None:
    status, _headers, body = await post_form(
        center,
        "root",
        "/admin/sms/senders",
        {"address": "+12125550170", "kind": "long_code", "country": "US", "mps": "x"},
    )
    assert status == 422 and "mps is a number" in body
    assert await count(center, SmsSender) == 1  # only the center's own
    status, headers, _body = await post_form(
        center,
        "root",
        "/admin/sms/senders",
        {"address": "+12125550170", "kind": "long_code", "country": "US", "mps": "5", "label": "Unregistered"},
    )
    assert status == 204 and headers["hx-redirect"] == "/admin/sms/senders"
    page = await get_page(center, "root", "/admin/sms/senders")
    assert "+12125550170" in page and "not registered for A2P 10DLC" in page

    # the marketer picks it anyway (a crafted form: the screen disables it): refused, with the reason, nothing made
    status, _headers, body = await post_form(
        center,
        "mkt",
        "/campaigns",
        {
            "name": "Sneaky",
            "template": "Hi {first_name}",
            "audience": "customers",
            "customers": "+15551230001",
            "sender_mode": "one",
            "sender": "+12125550170",
        },
    )
    assert status == 422 and "A2P 10DLC" in body
    assert await count(center, SmsCampaign) == 0

    form = aiohttp.FormData()
    for key, value in {
        "name": "From a CSV",
        "template": "Hi {first_name}",
        "audience": "csv",
        "sender_mode": "auto",
        "quiet_start_hour": "0",
        "quiet_end_hour": "0",
    }.items():
        form.add_field(key, value)
    form.add_field(
        "csv",
        b"phone,first_name\n+15551230001,Alice\nnope,Bad\n+15551230002,Bea\n+15551230001,Alice twice\n",
        filename="audience.csv",
        content_type="text/csv",
    )
    status, headers, _body = await post_form(center, "mkt", "/campaigns", form)
    assert status == 204
    async with center.runtime.sessions() as session:
        campaign = await session.scalar(select(SmsCampaign))
        numbers = set(await session.scalars(select(SmsCampaignRecipient.number)))
    assert campaign is not None and headers["hx-redirect"] == f"/campaigns/{campaign.id}"
    assert numbers == {"+15551230001", "+15551230002"}
    page = await get_page(center, "mkt", f"/campaigns/{campaign.id}")
    assert "Line 3: &#39;nope&#39; is not a valid phone number." in page
    assert "1 duplicate dropped" in page
    assert 'id="estimate-sendable">2<' in page
    listing = await get_page(center, "mkt", "/campaigns")
    assert "From a CSV" in listing

    status, _headers, body = await post_form(
        center, "root", "/admin/sms/automations/missed_call", {"enabled": "1", "template": "Missed you {promo}"}
    )
    assert status == 422 and "{promo} has no value here" in body
    status, _headers, _body = await post_form(
        center, "root", "/admin/sms/automations/missed_call", {"enabled": "1", "template": "Sorry we missed you."}
    )
    assert status == 204
    async with center.runtime.sessions() as session:
        automation = await session.get(SmsAutomation, "missed_call")
    assert automation is not None and automation.enabled and automation.template == "Sorry we missed you."
    page = await get_page(center, "root", "/admin/sms/automations")
    assert "Sorry we missed you." in page
