"""End to end: the PBX's recorded MixMonitor call replayed over AMI to the live center, espeak-ng speech where the
PBX writes its recording → ingested, transcribed word for word as bare Vosk, searchable by the agent who took the
call (and by nobody else's agents), opened from a hit with the player set to the word, every read audited."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from crm_core.audit.models import AuditEntry
from crm_core.calls.events import CallEnded
from crm_core.calls.models import CallLog
from crm_core.recordings.models import Transcript
from recordings.ingest import RecordingIngester
from recordings.store import LocalArchive, RecordingStore
from recordings.transcribe import Transcriber
from tests.cti.conftest import trace
from tests.desktop.live import LiveCenter, start_center
from tests.desktop.test_authorization import signed_in_as
from tests.recordings.speech import SENTENCES, bare_vosk_words, speak

LINKEDID = "1795462442.0"  # the trace's call; MixMonitor writes 1795462442.1.wav (MIXMONITOR_FILENAME)


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[LiveCenter]:
    live = await start_center(tmp_path)
    try:
        yield live
    finally:
        await live.stop()


async def replay_recorded_call(center: LiveCenter, tmp_path: Path) -> Path:
    """Speech where the PBX writes its recordings, then the recorded call (MixMonitor and all) over AMI."""
    spool = center.runtime.settings.recordings_folder
    spool.mkdir(parents=True, exist_ok=True)
    wav = speak(" ".join(SENTENCES[:2]), spool / "1795462442.1.wav", rate=16000)
    ended = asyncio.Event()
    center.runtime.bus.subscribe(CallEnded, lambda e: ended.set() if e.linkedid == LINKEDID else None)
    await center.pbx.replay(trace("inbound_queue_answered"))
    await asyncio.wait_for(ended.wait(), 10)
    assert center.writer is not None
    await center.writer.drain()
    return wav


async def ingest_and_transcribe(center: LiveCenter, pool: ProcessPoolExecutor, model: Path) -> None:
    settings = center.runtime.settings
    archive = LocalArchive(settings.recordings_store_folder)
    ingester = RecordingIngester(
        center.runtime.sessions,
        spool=RecordingStore(settings.recordings_folder),
        archive=archive,
        bus=center.runtime.bus,
        settle_s=0,
    )
    assert await ingester.run_once() is not None
    transcriber = Transcriber(
        center.runtime.sessions, archive=archive, model_path=model, pool=pool, bus=center.runtime.bus
    )
    assert await transcriber.run_pending() == 1


async def test_a_recorded_call_is_ingested_transcribed_searched_and_opened_at_the_word(
    center: LiveCenter, tmp_path: Path, vosk_pool: ProcessPoolExecutor, model_path: Path
) -> None:
    wav = await replay_recorded_call(center, tmp_path)
    await ingest_and_transcribe(center, vosk_pool, model_path)

    async with center.runtime.sessions() as db:
        call = await db.scalar(select(CallLog).where(CallLog.linkedid == LINKEDID))
        assert call is not None and call.customer_id == center.customers["Alice Example"]
        transcript = await db.scalar(select(Transcript).where(Transcript.call_id == call.id))
    assert transcript is not None
    words = [w[:3] for line in transcript.lines for w in line["words"]]
    assert words == bare_vosk_words(vosk_pool, wav) and len(words) >= 3  # word for word, times included
    searched = words[len(words) // 2]  # a word from the middle of the call

    agent, _ = await signed_in_as(center, "agent1001")  # who answered the call in the trace
    other, _ = await signed_in_as(center, "agent2001")
    try:
        async with agent.get(f"{center.base_url}/transcripts", params={"q": searched[0]}) as response:
            page = await response.text()
            assert response.status == 200
        link = re.search(r'href="(/calls/1795462442\.0/transcript\?t=[0-9.]+)"', page)
        assert link is not None, page
        assert f"<mark>{html.escape(searched[0])}</mark>" in page
        assert float(link.group(1).rsplit("=", 1)[1]) <= searched[1]  # the first time the word was said

        async with agent.get(center.base_url + html.unescape(link.group(1))) as response:
            call_page = await response.text()
            assert response.status == 200
        assert 'id="transcript-player"' in call_page and "/api/calls/1795462442.0/recording" in call_page
        assert f'<span class="word" data-start="{searched[1]}">{html.escape(searched[0])}</span>' in call_page
        assert 'class="line hit"' in call_page and "<script>" not in call_page  # CSP: no inline script

        async with agent.get(f"{center.base_url}/customers/{center.customers['Alice Example']}") as response:
            customer_page = await response.text()
        assert 'href="/calls/1795462442.0/transcript"' in customer_page
        assert f'name="customer" value="{center.customers["Alice Example"]}"' in customer_page

        # an agent who had no part in the call finds nothing and may not open it
        async with other.get(f"{center.base_url}/transcripts", params={"q": searched[0]}) as response:
            assert "1795462442.0" not in await response.text()
        async with other.get(f"{center.base_url}/calls/1795462442.0/transcript") as response:
            assert response.status == 403
        async with agent.get(f"{center.base_url}/transcripts", params={"q": "!!!"}) as response:
            assert response.status == 422
            assert "Type at least one word" in await response.text()
    finally:
        await agent.close()
        await other.close()

    async with center.runtime.sessions() as db:
        audited = [
            (e.entity_type, e.entity_id)
            for e in await db.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_type.in_(["transcript", "transcript_search"]))
                .order_by(AuditEntry.at)
            )
        ]
    assert audited == [("transcript_search", "*"), ("transcript", transcript.id), ("transcript_search", "*")]
