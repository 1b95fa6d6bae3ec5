"""Keyword alerts: a supervisor's phrase heard in a transcript flags the call, is listed for supervisors, and
reaches the supervisors' screens live; a transcript without it flags nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crm_core.calls.models import CallLog
from crm_core.db import unit_of_work
from crm_core.recordings.events import KeywordHeard
from crm_core.recordings.models import CallKeywordHit, JobKind, Recording, RecordingJob
from crm_core.recordings.service import claim_job, store_transcript
from tests.desktop.live import LiveCenter, start_center, wait_event
from tests.desktop.test_authorization import signed_in_as
from tests.recordings.helpers import ended_call


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[LiveCenter]:
    live = await start_center(tmp_path)
    try:
        yield live
    finally:
        await live.stop()


def dialogue(customer: str, agent: str) -> list[dict[str, Any]]:
    lines = []
    for start, speaker, said in ((0.0, "agent", agent), (3.0, "customer", customer)):
        words = [[w, start + i * 0.5, start + i * 0.5 + 0.4, 1.0] for i, w in enumerate(said.split())]
        lines.append({"speaker": speaker, "start": start, "end": words[-1][2], "text": said, "words": words})
    return lines


async def transcribe_as_the_worker_does(center: LiveCenter, linkedid: str, lines: list[dict[str, Any]]) -> None:
    """The recording stored and its transcription job claimed and finished, as the workers do it (no Vosk)."""
    sessions = center.runtime.sessions
    await ended_call(sessions, linkedid, f"{linkedid}.wav")
    async with sessions() as db, db.begin():
        call_id = await db.scalar(select(CallLog.id).where(CallLog.linkedid == linkedid))
        recording = Recording(call_id=call_id, source_ref=f"{linkedid}.wav", status="stored", storage_key="x.wav")
        db.add(recording)
        await db.flush()
        db.add(RecordingJob(recording_id=recording.id, kind=JobKind.TRANSCRIBE.value))
    async with unit_of_work(sessions, center.runtime.bus) as db:
        job = await claim_job(session=db, kind=JobKind.TRANSCRIBE, worker="test", lease_s=60)
    assert job is not None and job.linkedid == linkedid
    async with unit_of_work(sessions, center.runtime.bus) as db:
        assert await store_transcript(session=db, job=job, lines=lines, model="test", audio_s=5, took_s=1)


async def test_a_phrase_heard_flags_the_call_and_tells_the_supervisors_live(center: LiveCenter) -> None:
    boss, token = await signed_in_as(center, "boss")
    wallboard = await center.socket("boss", "/supervisor")
    heard: list[KeywordHeard] = []
    center.runtime.bus.subscribe(KeywordHeard, heard.append)
    try:
        form = {"phrase": "  Cancel my CONTRACT! "}
        headers = {"X-CSRF-Token": token, "HX-Request": "true"}
        async with boss.post(f"{center.base_url}/keywords", data=form, headers=headers) as response:
            listed = await response.text()
        assert response.status == 200 and "“cancel my contract”" in listed
        async with boss.post(f"{center.base_url}/keywords", data={"phrase": "?!"}, headers=headers) as response:
            assert response.status == 422 and (await response.json())["details"] == {"field": "phrase"}

        await transcribe_as_the_worker_does(center, "k.1", dialogue("please cancel my contract today", "hello"))
        await transcribe_as_the_worker_does(center, "k.2", dialogue("my contract is fine", "cancel it"))

        alert = await wait_event(wallboard, "keyword_heard")
        assert (alert["linkedid"], alert["phrase"], alert["speaker"], alert["at_s"]) == (
            "k.1",
            "cancel my contract",
            "customer",
            3.5,
        )
        assert [(e.linkedid, e.agent) for e in heard] == [("k.1", "1001")]  # k.2 never said the whole phrase
        async with boss.get(f"{center.base_url}/keywords") as response:
            page = await response.text()
        assert 'href="/calls/k.1/transcript?t=3.5"' in page and "k.2" not in page
    finally:
        await wallboard.disconnect()
        await boss.close()
    async with center.runtime.sessions() as db:
        hits = list(await db.scalars(select(CallKeywordHit)))
    assert [(h.phrase, h.speaker, h.at_s) for h in hits] == [("cancel my contract", "customer", 3.5)]
