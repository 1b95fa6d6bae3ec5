"""The SMS inbox in real headless Chromium: a customer's text (a signed webhook from the fake Twilio) appears live in
the agent's inbox, the agent opens it and replies, the fake Twilio receives the reply and its delivery shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.browser.test_desktop_browser import browser, sign_in  # noqa: F401  (fixtures)
from tests.sms.live import ALICE, SENDER, SmsCenter, start_sms_center

pytestmark = pytest.mark.browser


@pytest.fixture
async def sms_center(tmp_path: Path) -> AsyncIterator[SmsCenter]:
    live = await start_sms_center(tmp_path)
    try:
        yield live
    finally:
        await live.stop()


async def test_a_text_appears_live_and_the_agent_replies(browser: Browser, sms_center: SmsCenter) -> None:  # noqa: F811
    page = await sign_in(browser, sms_center, "agent1001", "/sms")  # type: ignore[arg-type]
    await expect(page.locator("#sms-live")).to_have_text("Live.")
    await expect(page.locator("#sms-list")).to_contain_text("No open conversation here.")

    assert await sms_center.text_in("My parcel never arrived") == 200
    row = page.locator("#sms-list table.sms-conversations tbody tr")
    await expect(row).to_have_count(1)  # live: no reload
    await expect(row).to_contain_text("Alice Example")
    await expect(row).to_contain_text("My parcel never arrived")
    await expect(page.locator("#sms-list nav")).to_contain_text("Unassigned (1)")

    await row.locator("a.sms-open").click()
    await expect(page.locator("#sms-live")).to_have_text("Live.")
    thread = page.locator("#sms-thread")
    await expect(thread.locator("li.sms-inbound .sms-body")).to_have_text("My parcel never arrived")
    await page.fill('#sms-reply-form textarea[name="body"]', "Sorry! A new one leaves today.")
    await page.click('#sms-reply-form button[type="submit"]')
    outbound = page.locator("#sms-thread li.sms-outbound")
    await expect(outbound.locator(".sms-body")).to_have_text("Sorry! A new one leaves today.")
    await expect(page.locator('#sms-reply-form textarea[name="body"]')).to_have_value("")
    await expect(outbound.locator(".sms-status")).to_have_text("delivered")  # the status callbacks, live
    await expect(page.locator("#sms-thread .sms-assignee")).to_have_text("Agent1001")

    sent = sms_center.twilio.sent_to(ALICE)
    assert [(m["from"], m["body"]) for m in sent] == [(SENDER, "Sorry! A new one leaves today.")]

    assert await sms_center.text_in("Thanks, great!") == 200  # the customer answers: it shows in the open thread
    await expect(page.locator("#sms-thread li.sms-inbound .sms-body")).to_have_text(
        ["My parcel never arrived", "Thanks, great!"]
    )


async def test_an_open_sms_conversation_is_an_interaction_in_the_workspace(
    browser: Browser,  # noqa: F811
    sms_center: SmsCenter,
) -> None:
    page = await sign_in(browser, sms_center, "agent1001", "/desktop")  # type: ignore[arg-type]
    sms = page.locator("#sms-interactions")
    await expect(sms).to_contain_text("No open SMS conversation.")
    await expect(page.locator("#desktop-message")).to_have_text("Connected.")
    assert await sms_center.text_in("Is my order shipped?") == 200
    item = sms.locator("li.sms-interaction")
    await expect(item).to_have_count(1)  # live, beside the calls, without a reload
    await expect(item).to_contain_text("Alice Example")
    await expect(item.locator(".what")).to_have_text("SMS · unassigned · 1 new")
    await expect(item.locator(".sms-last")).to_have_text("Is my order shipped?")
    conversation = await sms_center.conversation_of()
    assert await item.locator("a").get_attribute("href") == f"/sms/conversations/{conversation.id}"
