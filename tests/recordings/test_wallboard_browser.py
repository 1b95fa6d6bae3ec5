"""In real headless Chromium: the wallboard's flagged calls are on the page when it loads and a call flagged
while it is open appears at once; the agent on a call switches its transcription off from the call page."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from crm_core.db import unit_of_work
from crm_core.recordings.service import add_keyword
from crm_core.users.models import Role
from crm_core.users.service import Actor
from tests.browser.test_desktop_browser import browser, center, sign_in  # noqa: F401  (fixtures)
from tests.desktop.live import LiveCenter
from tests.recordings.helpers import ended_call
from tests.recordings.test_keywords import dialogue, transcribe_as_the_worker_does

pytestmark = pytest.mark.browser


async def test_the_wallboard_lists_flagged_calls_on_load_and_live(
    browser: Browser,  # noqa: F811
    center: LiveCenter,  # noqa: F811
) -> None:
    async with unit_of_work(center.runtime.sessions) as db:
        await add_keyword(session=db, actor=Actor(user_id="boss", role=Role.SUPERVISOR), phrase="cancel my contract")
    await transcribe_as_the_worker_does(center, "w.1", dialogue("i want to cancel my contract", "hello"))

    page = await sign_in(browser, center, "boss", "/wallboard")
    flagged = page.locator("#flagged-calls tbody tr[data-linkedid]")
    await expect(flagged).to_have_count(1)  # rendered with the page
    first = page.locator('#flagged-calls tr[data-linkedid="w.1"]')
    await expect(first).to_contain_text("“cancel my contract”")
    await expect(first).to_contain_text("customer")
    await expect(first.locator("a")).to_have_attribute("href", "/calls/w.1/transcript?t=4.5")
    await expect(page.locator("#pbx-status")).to_have_text("Live.")  # the live socket is up

    await transcribe_as_the_worker_does(center, "w.2", dialogue("fine thanks", "shall i cancel my contract"))
    await expect(flagged).to_have_count(2)  # arrived live, newest first
    await expect(flagged.first).to_have_attribute("data-linkedid", "w.2")
    await expect(flagged.first).to_contain_text("agent")
    assert page.dialogs == []  # type: ignore[attr-defined]


async def test_the_agent_switches_transcription_off_on_the_call_page(
    browser: Browser,  # noqa: F811
    center: LiveCenter,  # noqa: F811
) -> None:
    await ended_call(center.runtime.sessions, "d.1", "d.wav")
    page = await sign_in(browser, center, "agent1001", "/calls/d.1/transcript")
    consent = page.locator("#transcription-consent")
    await expect(consent).to_contain_text("Transcription of this call: on")
    await consent.locator("button").click()
    await expect(consent).to_contain_text("off (the caller declined)")
    await page.reload()
    await expect(page.locator("#transcription-consent")).to_contain_text("off (the caller declined)")
    await page.locator("#transcription-consent button").click()
    await expect(page.locator("#transcription-consent")).to_contain_text("Transcription of this call: on")
