"""Ingest: a reported recording is taken into storage once complete, measured and checksummed; bad files get a
reason and a retry with backoff, and never stop the next file."""

from __future__ import annotations

import hashlib
import os
import struct
import time
import wave
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.calls.models import CallLog
from crm_core.db import utcnow
from crm_core.recordings.events import RecordingFailed, RecordingStored
from crm_core.recordings.models import JobKind, JobStatus, RecordingStatus
from tests.conftest import RecordingBus
from tests.recordings.helpers import ended_call, ingester, recording_of


def pcm_wav(path: Path, *, seconds: float, rate: int = 8000, channels: int = 1) -> bytes:
    """A tone as MixMonitor writes it: 16-bit PCM WAV."""
    frames = int(seconds * rate)
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(channels)
        audio.setsampwidth(2)
        audio.setframerate(rate)
        audio.writeframes(struct.pack("<h", 1000) * frames * channels)
    return path.read_bytes()


async def test_a_reported_recording_is_stored_with_its_facts_and_queued_for_transcription(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, bus: RecordingBus
) -> None:
    (tmp_path / "spool").mkdir()
    audio = pcm_wav(tmp_path / "spool" / "1795462442.1.wav", seconds=2.5)
    await ended_call(sessions, "1795462442.0", "1795462442.1.wav")
    worker = ingester(sessions, tmp_path, bus=bus)

    job = await worker.run_once()
    assert job is not None and job.linkedid == "1795462442.0"
    assert await worker.run_once() is None  # nothing else to do

    recording, jobs = await recording_of(sessions, "1795462442.0")
    assert recording.status == RecordingStatus.STORED
    assert (recording.audio_format, recording.channels, recording.sample_rate, recording.layout) == (
        "wav",
        1,
        8000,
        "mono",
    )
    assert recording.duration_s == 2.5
    assert recording.size_bytes == len(audio)
    assert recording.sha256 == hashlib.sha256(audio).hexdigest()
    assert recording.storage_key is not None and recording.storage_key.endswith(f"{recording.id}.wav")
    assert (tmp_path / "store" / recording.storage_key).read_bytes() == audio
    assert [(j.kind, j.status) for j in jobs] == [
        (JobKind.INGEST, JobStatus.DONE),
        (JobKind.TRANSCRIBE, JobStatus.QUEUED),
    ]
    assert [type(e) for e in bus.published] == [RecordingStored]
    assert bus.published[0] == RecordingStored(recording.id, "1795462442.0", 2.5, recording.stored_at)  # type: ignore[arg-type]


async def test_a_file_still_being_written_waits_until_it_stands_still(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    (tmp_path / "spool").mkdir()
    growing = tmp_path / "spool" / "1795462442.5.wav"
    pcm_wav(growing, seconds=1)
    await ended_call(sessions, "1795462442.4", growing.name)
    worker = ingester(sessions, tmp_path, settle_s=30)

    assert await worker.run_once() is not None  # just written: not taken
    recording, jobs = await recording_of(sessions, "1795462442.4")
    assert recording.status == RecordingStatus.PENDING and jobs[0].status == JobStatus.QUEUED
    assert jobs[0].attempts == 0 and jobs[0].seen_size == growing.stat().st_size
    assert await worker.run_once() is None  # not due again before the settle time

    # the sync finished long ago: untouched for longer than the settle time, same size as last seen
    old = time.time() - 60
    os.utime(growing, (old, old))
    async with sessions() as session, session.begin():
        jobs[0] = await session.merge(jobs[0])
        jobs[0].due_at = jobs[0].created_at
    assert await worker.run_once() is not None
    recording, _ = await recording_of(sessions, "1795462442.4")
    assert recording.status == RecordingStatus.STORED


async def test_bad_files_get_a_reason_each_are_retried_with_backoff_and_the_good_one_goes_through(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, bus: RecordingBus
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "empty.wav").write_bytes(b"")
    full = pcm_wav(spool / "cut.wav", seconds=2)
    (spool / "cut.wav").write_bytes(full[: len(full) // 2])
    (spool / "text.wav").write_bytes(b"this is a note, not audio\n" * 20)
    pcm_wav(spool / "silent.wav", seconds=0)
    with wave.open(str(spool / "eight.wav"), "wb") as audio:  # 8-bit samples
        audio.setnchannels(1)
        audio.setsampwidth(1)
        audio.setframerate(8000)
        audio.writeframes(b"\x80" * 8000)
    good = pcm_wav(spool / "good.wav", seconds=1, rate=48000, channels=2)
    expected = {
        "1.0": "never.wav is missing: it has not reached the recordings folder.",
        "2.0": "empty.wav is empty (0 bytes).",
        "3.0": f"cut.wav is truncated: its header announces {len(full) - 44} bytes of audio, "
        f"{len(full) // 2 - 44} are there.",
        "4.0": "text.wav is not a WAV audio file (format .wav is not supported; PCM WAV only).",
        "5.0": "silent.wav holds no audio (0 seconds).",
        "6.0": "eight.wav has 8-bit samples; only 16-bit PCM is supported.",
    }
    names = ["never.wav", "empty.wav", "cut.wav", "text.wav", "silent.wav", "eight.wav", "good.wav"]
    for n, name in enumerate(names, start=1):
        await ended_call(sessions, f"{n}.0", name)
    worker = ingester(sessions, tmp_path, bus=bus, retry_s=60, max_attempts=2)

    while await worker.run_once() is not None:
        pass

    for linkedid, reason in expected.items():
        recording, jobs = await recording_of(sessions, linkedid)
        assert (recording.status, recording.reason) == (RecordingStatus.PENDING, reason), linkedid
        assert (jobs[0].status, jobs[0].attempts, jobs[0].reason) == (JobStatus.QUEUED, 1, reason)
        assert 55 < (jobs[0].due_at - utcnow()).total_seconds() <= 60  # the first retry: retry_s later
    stored, _ = await recording_of(sessions, "7.0")
    assert (stored.status, stored.channels, stored.sample_rate, stored.duration_s) == ("stored", 2, 48000, 1.0)
    assert stored.sha256 == hashlib.sha256(good).hexdigest()

    # the second (last) attempt fails for good, with the reason kept and an event per recording
    async with sessions() as session, session.begin():
        for linkedid in expected:
            _, jobs = await recording_of(sessions, linkedid)
            job = await session.merge(jobs[0])
            job.due_at = job.created_at
    while await worker.run_once() is not None:
        pass
    for linkedid, reason in expected.items():
        recording, jobs = await recording_of(sessions, linkedid)
        assert (recording.status, recording.reason) == (RecordingStatus.FAILED, reason)
        assert (jobs[0].status, jobs[0].attempts) == (JobStatus.FAILED, 2)
    failed = bus.of_type(RecordingFailed)
    assert sorted((e.linkedid, e.reason) for e in failed) == sorted(expected.items())  # type: ignore[attr-defined]
    assert len(bus.of_type(RecordingStored)) == 1
    assert len(bus.published) == len(expected) + 1


async def test_no_transcription_in_a_queue_where_it_is_off_or_when_the_caller_declined(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    (tmp_path / "spool").mkdir()
    for n, (queue, ivr_vars) in enumerate(
        (("support", {}), ("legal", {}), ("support", {"CRM_TRANSCRIBE": "no"}), ("support", {"CRM_TRANSCRIBE": "yes"}))
    ):
        pcm_wav(tmp_path / "spool" / f"c{n}.wav", seconds=1)
        await ended_call(sessions, f"c.{n}", f"c{n}.wav")
        async with sessions() as session, session.begin():
            await session.execute(
                update(CallLog).where(CallLog.linkedid == f"c.{n}").values(queue=queue, ivr_vars=ivr_vars)
            )
    worker = ingester(sessions, tmp_path, skip_queues=frozenset({"legal"}))
    while await worker.run_once() is not None:
        pass
    kinds = {}
    for n in range(4):
        recording, jobs = await recording_of(sessions, f"c.{n}")
        assert recording.status == RecordingStatus.STORED  # recorded and kept in every case
        kinds[n] = [j.kind for j in jobs]
    assert kinds == {
        0: ["ingest", "transcribe"],
        1: ["ingest"],
        2: ["ingest"],
        3: ["ingest", "transcribe"],
    }
