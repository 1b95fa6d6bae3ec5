"""The web pages of recording rules: retention and transcription per queue (admins), legal holds (supervisors),
and the caller's consent on one call (the agent who answered it); each change audited, bad input refused with the
field named and nothing written; what they set is what the workers and the retention sweep then do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from crm_core.audit.models import AuditEntry
from crm_core.calls.models import CallLog
from crm_core.db import unit_of_work, utcnow
from crm_core.recordings.models import (
    JobKind,
    JobStatus,
    LegalHold,
    Recording,
    RecordingStatus,
    RetentionRule,
    Transcript,
    TranscriptionOptOut,
)
from crm_core.recordings.service import claim_job, expire_recordings, store_transcript
from tests.desktop.live import LiveCenter, start_center
from tests.desktop.test_authorization import signed_in_as
from tests.recordings.helpers import ended_call, ingester, recording_of
from tests.recordings.speech import SENTENCES, speak


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[LiveCenter]:
    live = await start_center(tmp_path)
    try:
        yield live
    finally:
        await live.stop()


async def audit_of(center: LiveCenter, entity_type: str) -> list[tuple[str, str, object]]:
    async with center.runtime.sessions() as db:
        entries = await db.scalars(
            select(AuditEntry).where(AuditEntry.entity_type == entity_type).order_by(AuditEntry.at)
        )
        return [(e.action, e.entity_id, e.after) for e in entries]


async def in_queue(center: LiveCenter, linkedid: str, file_name: str, queue: str) -> None:
    await ended_call(center.runtime.sessions, linkedid, file_name)
    async with center.runtime.unit_of_work() as db:
        await db.execute(update(CallLog).where(CallLog.linkedid == linkedid).values(queue=queue))


async def test_an_admin_sets_retention_and_transcription_per_queue_and_the_workers_follow(
    center: LiveCenter, tmp_path: Path
) -> None:
    admin, token = await signed_in_as(center, "root")
    headers = {"X-CSRF-Token": token, "HX-Request": "true"}
    base = center.base_url
    try:
        async with admin.post(
            f"{base}/admin/recordings/retention", data={"queue": "support", "days": "30"}, headers=headers
        ) as r:
            table = await r.text()
        assert r.status == 200 and '<tr data-queue="support">' in table and "30 days" in table
        async with admin.post(
            f"{base}/admin/recordings/transcription", data={"queue": "sales", "transcribe": "off"}, headers=headers
        ) as r:
            table = await r.text()
        assert r.status == 200 and "Turn transcription on" in table
        for form, field in (
            ({"queue": "support", "days": "thirty"}, "days"),
            ({"queue": "support", "days": "0"}, "days"),
            ({"queue": "sup port<b>", "days": "5"}, "queue"),
        ):
            async with admin.post(f"{base}/admin/recordings/retention", data=form, headers=headers) as r:
                assert r.status == 422 and (await r.json())["details"] == {"field": field}, form
        async with admin.post(
            f"{base}/admin/recordings/transcription", data={"queue": "sales", "transcribe": "maybe"}, headers=headers
        ) as r:
            assert r.status == 422 and (await r.json())["details"] == {"field": "transcribe"}
        async with admin.get(f"{base}/admin/recordings/rules") as r:
            page = await r.text()
        assert r.status == 200 and 'data-queue="sales"' in page and 'data-queue="support"' in page
    finally:
        await admin.close()
    async with center.runtime.sessions() as db:
        assert [(r.queue, r.days) for r in await db.scalars(select(RetentionRule))] == [("support", 30)]
        assert [o.queue for o in await db.scalars(select(TranscriptionOptOut))] == ["sales"]
    assert await audit_of(center, "recording_retention") == [("update", "support", {"days": 30})]
    assert await audit_of(center, "queue_transcription") == [("update", "sales", {"transcription": False})]

    # the ingest queues no transcription for a sales call, and does for a support call
    spool = tmp_path / "spool"
    spool.mkdir()
    speak(SENTENCES[0], spool / "s.wav", rate=8000)
    speak(SENTENCES[1], spool / "h.wav", rate=8000)
    await in_queue(center, "q.1", "s.wav", "sales")
    await in_queue(center, "q.2", "h.wav", "support")
    while await ingester(center.runtime.sessions, tmp_path).run_once() is not None:
        pass
    _, sales_jobs = await recording_of(center.runtime.sessions, "q.1")
    _, support_jobs = await recording_of(center.runtime.sessions, "q.2")
    assert [j.kind for j in sales_jobs] == [JobKind.INGEST]
    assert [j.kind for j in support_jobs] == [JobKind.INGEST, JobKind.TRANSCRIBE]


async def test_a_supervisor_holds_a_call_and_retention_spares_it_until_released(center: LiveCenter) -> None:
    sessions = center.runtime.sessions
    boss, token = await signed_in_as(center, "boss")
    headers = {"X-CSRF-Token": token, "HX-Request": "true"}
    base = center.base_url
    await in_queue(center, "h.1", "h1.wav", "support")
    old = utcnow() - timedelta(days=40)
    async with center.runtime.unit_of_work() as db:
        call = await db.scalar(select(CallLog).where(CallLog.linkedid == "h.1"))
        assert call is not None
        call.ended_at = old
        db.add(Recording(call_id=call.id, source_ref="h1.wav", status="stored"))
        db.add(RetentionRule(queue="support", days=30))
    try:
        for form, field in (
            ({"what": "call", "target": "h.1", "reason": "   "}, "reason"),
            ({"what": "call", "target": "", "reason": "complaint"}, "target"),
            ({"what": "queue", "target": "h.1", "reason": "complaint"}, "what"),
        ):
            async with boss.post(f"{base}/legal-holds", data=form, headers=headers) as r:
                assert r.status == 422 and (await r.json())["details"] == {"field": field}, form
        async with boss.post(
            f"{base}/legal-holds", data={"what": "customer", "target": "0" * 32, "reason": "x"}, headers=headers
        ) as r:
            assert r.status == 404
        async with boss.post(
            f"{base}/legal-holds",
            data={"what": "call", "target": "h.1", "reason": "complaint <b>2026-114</b>"},
            headers=headers,
        ) as r:
            listed = await r.text()
        assert r.status == 200 and "complaint &lt;b&gt;2026-114&lt;/b&gt;" in listed and ">h.1</a>" in listed

        async with unit_of_work(sessions) as db:
            assert await expire_recordings(session=db) == []  # held
        recording, _ = await recording_of(sessions, "h.1")
        assert recording.status == RecordingStatus.STORED

        async with sessions() as db:
            hold = await db.scalar(select(LegalHold))
        assert hold is not None
        async with boss.post(f"{base}/legal-holds/{hold.id}/release", headers=headers) as r:
            assert r.status == 200 and "No hold in force." in await r.text()
        async with boss.post(f"{base}/legal-holds/{hold.id}/release", headers=headers) as r:
            assert r.status == 404  # released once
    finally:
        await boss.close()
    async with unit_of_work(sessions) as db:
        await expire_recordings(session=db)
    recording, _ = await recording_of(sessions, "h.1")
    assert recording.status == RecordingStatus.DELETED
    assert [a[0] for a in await audit_of(center, "legal_hold")] == ["create", "update"]


async def test_the_agent_on_the_call_switches_transcription_off_and_nothing_is_transcribed(
    center: LiveCenter, tmp_path: Path
) -> None:
    sessions = center.runtime.sessions
    spool = tmp_path / "spool"
    spool.mkdir()
    speak(SENTENCES[0], spool / "c.wav", rate=8000)
    await ended_call(sessions, "c.1", "c.wav")
    while await ingester(sessions, tmp_path).run_once() is not None:
        pass
    _, jobs = await recording_of(sessions, "c.1")
    assert [j.status for j in jobs if j.kind == JobKind.TRANSCRIBE] == [JobStatus.QUEUED]
    async with unit_of_work(sessions) as db:  # a worker has it already
        job = await claim_job(session=db, kind=JobKind.TRANSCRIBE, worker="w", lease_s=60)
    assert job is not None

    stranger, stranger_token = await signed_in_as(center, "agent2001")
    agent, token = await signed_in_as(center, "agent1001")
    base = center.base_url
    try:
        async with agent.get(f"{base}/calls/c.1/transcript") as r:
            page = await r.text()
        assert "Caller declines: turn transcription off" in page
        form = {"transcribe": "off"}
        async with stranger.post(
            f"{base}/calls/c.1/transcription", data=form, headers={"X-CSRF-Token": stranger_token}
        ) as r:
            assert r.status == 403
        async with agent.post(
            f"{base}/calls/c.1/transcription", data={"transcribe": "nope"}, headers={"X-CSRF-Token": token}
        ) as r:
            assert r.status == 422
        async with agent.post(f"{base}/calls/c.1/transcription", data=form, headers={"X-CSRF-Token": token}) as r:
            assert r.status == 200 and "off (the caller declined)" in await r.text()
    finally:
        await agent.close()
        await stranger.close()

    # the worker that was on it finishes: its job is no longer its own, nothing is stored
    lines = [{"speaker": None, "start": 0.0, "end": 0.4, "text": "hi", "words": [["hi", 0.0, 0.4, 1.0]]}]
    async with unit_of_work(sessions) as db:
        assert await store_transcript(session=db, job=job, lines=lines, model="m", audio_s=1, took_s=1) is None
    _, jobs = await recording_of(sessions, "c.1")
    [transcribe] = [j for j in jobs if j.kind == JobKind.TRANSCRIBE]
    assert (transcribe.status, transcribe.reason) == (JobStatus.DONE, "Not transcribed: the caller declined.")
    async with sessions() as db:
        assert list(await db.scalars(select(Transcript))) == []
    assert [(a, e) for a, e, _ in await audit_of(center, "call_transcription")] == [("update", "c.1")]
