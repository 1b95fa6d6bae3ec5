"""A marketer in real headless Chromium builds an SMS campaign from a segment, previews it (per recipient, segments,
cost), sends it and watches its progress reach done: the fake Twilio receives the messages through the real twilio
SDK and sends its signed status callbacks, which the progress (htmx polling) shows live."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.segments.service import create_segment
from crm_core.sms.service import record_consent
from crm_core.users.service import SYSTEM
from tests.browser.test_desktop_browser import browser, sign_in  # noqa: F401  (fixtures)
from tests.sms.live import SENDER, SmsCenter, start_sms_center

pytestmark = pytest.mark.browser
VIPS = {
    "Vera Important": "+12125550141",
    "Victor Plenty": "+12125550142",
    "Valerie Gold": "+12125550143",
    "Vince Quits": "+12125550144",  # opted out: left out of the campaign
    "Vanessa Nowhere": "+12125550145",  # her handset is unreachable: Twilio reports 30003
}


@pytest.fixture
async def sms_center(tmp_path: Path) -> AsyncIterator[SmsCenter]:
    live = await start_sms_center(tmp_path, mps=1)  # one a second: the progress is seen moving
    try:
        async with live.runtime.unit_of_work() as session:
            for name, number in VIPS.items():
                await create_customer(
                    session=session,
                    actor=SYSTEM,
                    region="US",
                    data=CustomerIn(name=name, phones=[PhoneIn(number=number)], tags=["vip"]),
                )
            await create_customer(  # not a VIP: not in the segment
                session=session,
                actor=SYSTEM,
                region="US",
                data=CustomerIn(name="Norm Regular", phones=[PhoneIn(number="+12125550146")]),
            )
            await record_consent(
                session=session, number=VIPS["Vince Quits"], opted_out=True, source="keyword", detail="STOP"
            )
            await create_segment(
                session=session,
                actor=SYSTEM,
                name="VIPs",
                definition={"tags": ["vip"], "exclude_opted_out": False},
            )
        live.twilio.deliver_as(VIPS["Vanessa Nowhere"], "undelivered", 30003)
        yield live
    finally:
        await live.stop()


async def test_a_marketer_builds_previews_sends_and_watches_a_campaign(
    browser: Browser,  # noqa: F811
    sms_center: SmsCenter,
) -> None:
    page = await sign_in(browser, sms_center, "mkt", "/campaigns")  # type: ignore[arg-type]
    await expect(page.locator("h1")).to_have_text("SMS campaigns")
    await page.click("text=Build a campaign")
    await page.fill('input[name="name"]', "VIP winter offer")
    await page.select_option('select[name="segment_id"]', label="VIPs")
    await page.select_option('select[name="sender"]', SENDER)
    await page.fill('input[name="quiet_start_hour"]', "0")  # no quiet hours: the test runs at any hour
    await page.fill('input[name="quiet_end_hour"]', "0")
    await page.fill('textarea[name="template"]', "Hi {first_name}, 20% off for VIPs this week. Reply STOP to opt out.")
    preview = page.locator("#template-preview")
    await expect(preview.locator("blockquote")).to_have_text(
        "Hi Valerie, 20% off for VIPs this week. Reply STOP to opt out."
    )
    await expect(preview.locator(".sms-shape")).to_contain_text("GSM-7")
    await expect(preview.locator(".sms-shape")).to_contain_text("1 segment")
    await page.fill('textarea[name="template"]', "Hi {first_name}, 20% off ☃ {promo}")
    await expect(preview.locator(".error")).to_contain_text("{promo}")  # a missing field, before anything is sent
    await page.fill('textarea[name="template"]', "Hi {first_name}, 20% off for VIPs this week ☃ Reply STOP to opt out.")
    await expect(preview.locator(".sms-shape")).to_contain_text("UCS-2")  # the snowman makes it UCS-2: 2 segments
    await expect(preview.locator(".sms-shape")).to_contain_text("1 segment")
    await page.click('#campaign-form button[type="submit"]')

    # the draft: the audience minus the opted-out number, each recipient's message, segments and cost
    await expect(page.locator("h1")).to_have_text("VIP winter offer")
    await expect(page.locator("#estimate-sendable")).to_have_text("4")
    await expect(page.locator("#estimate-segments")).to_have_text("4")
    await expect(page.locator("#estimate-cost")).to_have_text("0.03")  # 4 segments at 0.0079
    rows = page.locator("#campaign-previews tr.preview-row")
    await expect(rows).to_have_count(5)
    await rows.filter(has_text="Victor Plenty").locator("button").click()
    await expect(page.locator("#recipient-preview blockquote")).to_have_text(
        "Hi Victor, 20% off for VIPs this week ☃ Reply STOP to opt out."
    )
    await expect(page.locator("#campaign-state")).to_have_text("draft")
    assert sms_center.twilio.accepted == []  # nothing sent before the marketer says so

    await page.click("#campaign-start")
    await expect(page.locator("#campaign-state")).to_have_text(re.compile("running|done"))
    # four messages at one a second: the page shows the campaign under way, then (polled, no reload) complete
    assert await page.locator("#campaign-complete").count() == 0
    await expect(page.locator("#campaign-complete")).to_have_text("Complete.", timeout=30_000)
    await expect(page.locator("#campaign-state")).to_have_text("done")
    await expect(page.locator("#campaign-final")).to_have_text("5")
    chart = page.locator("svg.statuses")
    await expect(chart.locator('text[data-status="delivered"]')).to_have_text("3")
    await expect(chart.locator('text[data-status="undelivered"]')).to_have_text("1")
    await expect(chart.locator('text[data-status="opted_out"]')).to_have_text("1")
    await expect(page.locator("#result-delivery")).to_have_text("75.0%")
    await expect(page.locator("#result-cost")).to_have_text("0.0316")
    statuses = page.locator("#campaign-recipients tr", has_text="Vanessa Nowhere").locator(".recipient-status")
    await expect(statuses).to_have_text("undelivered")

    sent = {m["to"]: m for m in sms_center.twilio.accepted}
    assert set(sent) == {VIPS[n] for n in ("Vera Important", "Victor Plenty", "Valerie Gold", "Vanessa Nowhere")}
    assert all(m["from"] == SENDER for m in sent.values())
    assert sent[VIPS["Vera Important"]]["body"] == "Hi Vera, 20% off for VIPs this week ☃ Reply STOP to opt out."
