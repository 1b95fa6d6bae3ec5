"""Transcripts in real headless Chromium: the recorded call replayed over AMI with espeak-ng speech as its
recording, ingested and transcribed by Vosk; the agent who took it searches from the customer page, opens the hit,
and the player starts at the word; a click on another word plays from there and its line is highlighted."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from crm_core.recordings.models import Transcript
from tests.browser.test_desktop_browser import browser, center, sign_in  # noqa: F401  (fixtures)
from tests.desktop.live import LiveCenter
from tests.recordings.conftest import model_path, vosk_pool  # noqa: F401  (fixtures)
from tests.recordings.test_end_to_end import ingest_and_transcribe, replay_recorded_call

pytestmark = pytest.mark.browser


async def test_a_transcript_found_from_the_customer_page_plays_from_the_word(
    browser: Browser,  # noqa: F811
    center: LiveCenter,  # noqa: F811
    tmp_path: Path,
    vosk_pool: ProcessPoolExecutor,  # noqa: F811
    model_path: Path,  # noqa: F811
) -> None:
    await replay_recorded_call(center, tmp_path)
    await ingest_and_transcribe(center, vosk_pool, model_path)
    async with center.runtime.sessions() as db:
        transcript = await db.scalar(select(Transcript))
    assert transcript is not None
    words = [w for line in transcript.lines for w in line["words"]]
    searched, later = words[len(words) // 2], words[-1]

    page = await sign_in(browser, center, "agent1001", f"/customers/{center.customers['Alice Example']}")
    await page.fill('section.transcripts input[name="q"]', searched[0])
    await page.click('section.transcripts button[type="submit"]')
    hit = page.locator("ol.transcript-hits li")
    await expect(hit).to_have_count(1)
    await expect(hit.locator("mark").first).to_have_text(searched[0])

    await hit.locator("a").click()
    player = page.locator("#transcript-player")
    await expect(page.locator("li.line.hit")).to_contain_text(searched[0])
    start = float(await player.get_attribute("data-start") or "0")
    assert 0 < start <= searched[1]
    # nothing is loaded before the person asks (a listen is audited); once the recording's length is known the
    # player stands at the searched word, still paused
    assert await player.evaluate("p => p.readyState") == 0
    await player.evaluate("p => { p.muted = true; p.preload = 'metadata'; p.load(); }")
    await page.wait_for_function("() => document.getElementById('transcript-player').currentTime > 0")
    assert await player.evaluate("p => [p.paused, p.currentTime]") == [True, pytest.approx(start, abs=0.01)]

    await page.locator(f'.word[data-start="{later[1]}"]').last.click()
    await page.wait_for_function(
        f"() => Math.abs(document.getElementById('transcript-player').currentTime - {later[1]}) < 0.6"
    )
    await expect(page.locator("li.line.playing").last).to_contain_text(later[0])
    assert page.dialogs == []  # type: ignore[attr-defined]
