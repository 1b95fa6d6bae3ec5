"""A worker that dies mid-job (its lease runs out) has used an attempt: a recording that kills its worker every
time is given up after the last attempt, with its reason, and the next job still goes on (both databases)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.db import unit_of_work, utcnow
from crm_core.recordings.models import JobKind, JobStatus, RecordingStatus
from crm_core.recordings.service import LEASE_LOST_REASON, claim_job
from tests.recordings.helpers import ended_call, ingester, recording_of
from tests.recordings.speech import SENTENCES, speak


async def test_lease_expiries_count_as_attempts_and_the_job_is_given_up_after_the_last(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    (tmp_path / "spool").mkdir()
    speak(SENTENCES[0], tmp_path / "spool" / "deadly.wav", rate=8000)
    speak(SENTENCES[1], tmp_path / "spool" / "fine.wav", rate=8000)
    await ended_call(sessions, "90.0", "deadly.wav")
    while await ingester(sessions, tmp_path).run_once() is not None:
        pass
    await ended_call(sessions, "91.0", "fine.wav")  # its transcription job is queued after the deadly one's
    while await ingester(sessions, tmp_path).run_once() is not None:
        pass

    now = utcnow() + timedelta(seconds=1)
    seen: list[tuple[str, int]] = []
    for worker in range(3):  # each claims the deadly job and "dies": nobody renews or finishes it
        async with unit_of_work(sessions) as session:
            job = await claim_job(
                session=session, kind=JobKind.TRANSCRIBE, worker=f"w{worker}", lease_s=10, now=now, max_attempts=3
            )
        assert job is not None
        seen.append((job.linkedid, job.attempts))
        _, jobs = await recording_of(sessions, "90.0")
        transcribe = next(j for j in jobs if j.kind == JobKind.TRANSCRIBE)
        assert (transcribe.status, transcribe.attempts) == (JobStatus.WORKING, worker)
        if worker:
            assert transcribe.reason == LEASE_LOST_REASON  # the backlog says why it is tried again
        now += timedelta(seconds=11)  # its lease ran out
    assert seen == [("90.0", 0), ("90.0", 1), ("90.0", 2)]

    # the third death is the last attempt: the job fails with its reason, the next job is handed out instead
    async with unit_of_work(sessions) as session:
        job = await claim_job(
            session=session, kind=JobKind.TRANSCRIBE, worker="w3", lease_s=10, now=now, max_attempts=3
        )
    assert job is not None and job.linkedid == "91.0" and job.attempts == 0
    recording, jobs = await recording_of(sessions, "90.0")
    transcribe = next(j for j in jobs if j.kind == JobKind.TRANSCRIBE)
    assert (transcribe.status, transcribe.attempts, transcribe.claim_token) == (JobStatus.FAILED, 3, None)
    assert transcribe.reason == f"{LEASE_LOST_REASON} Given up after 3 attempts."
    assert transcribe.finished_at is not None
    assert recording.status == RecordingStatus.STORED  # the recording itself is kept; only its transcript failed

    async with unit_of_work(sessions) as session:  # nothing more to claim: the failed job stays failed
        again = await claim_job(
            session=session, kind=JobKind.TRANSCRIBE, worker="w4", lease_s=10, now=now, max_attempts=3
        )
    assert again is None


async def test_an_ingest_whose_worker_keeps_dying_fails_the_recording_with_its_reason(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    (tmp_path / "spool").mkdir()
    speak(SENTENCES[0], tmp_path / "spool" / "huge.wav", rate=8000)
    await ended_call(sessions, "92.0", "huge.wav")
    worker = ingester(sessions, tmp_path)
    await worker.discover()
    now = utcnow() + timedelta(seconds=1)
    for attempt in range(2):
        async with unit_of_work(sessions) as session:
            job = await claim_job(session=session, kind=JobKind.INGEST, worker="w", lease_s=5, now=now, max_attempts=2)
        assert job is not None and job.attempts == attempt
        now += timedelta(seconds=6)
    async with unit_of_work(sessions) as session:
        assert (
            await claim_job(session=session, kind=JobKind.INGEST, worker="w", lease_s=5, now=now, max_attempts=2)
            is None
        )
    recording, jobs = await recording_of(sessions, "92.0")
    assert (jobs[0].status, jobs[0].attempts) == (JobStatus.FAILED, 2)
    assert recording.status == RecordingStatus.FAILED
    assert recording.reason == f"{LEASE_LOST_REASON} Given up after 2 attempts."
