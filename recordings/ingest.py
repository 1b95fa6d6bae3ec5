"""Takes the recordings the PBX reported into storage: found from ended calls, taken once complete (the call ended
and the file untouched for a while), checked and measured, copied with its checksum; problems retried with backoff."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.bus import EventBus
from crm_core.db import unit_of_work, utcnow
from crm_core.recordings.models import JobKind
from crm_core.recordings.service import (
    ClaimedJob,
    claim_job,
    discover_recordings,
    postpone_job,
    retry_or_fail_job,
    store_recording,
)
from crm_core.tasks import cancel_and_wait, wait_for_wake
from recordings.audio import AudioInfo, AudioProblem, probe_wav
from recordings.store import RecordingArchive, RecordingStore, StoredFile

log = logging.getLogger(__name__)


def worker_name(role: str) -> str:
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class _NotYet:
    size: int


@dataclass(frozen=True, slots=True)
class _Taken:
    stored: StoredFile
    info: AudioInfo
    layout: str


class RecordingIngester:
    """One loop: find new recordings, then take due ingest jobs one by one; one bad file never stops the next."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        spool: RecordingStore,
        archive: RecordingArchive,
        bus: EventBus | None = None,
        settle_s: float = 5.0,
        retry_s: float = 10.0,
        max_attempts: int = 8,
        transcribe: bool = True,
        skip_queues: frozenset[str] = frozenset(),
        every_s: float = 2.0,
        lease_s: float = 120.0,
    ) -> None:
        self.sessions = sessions
        self.spool = spool
        self.archive = archive
        self.bus = bus
        self.settle_s = settle_s
        self.retry_s = retry_s
        self.max_attempts = max_attempts
        self.transcribe = transcribe
        self.skip_queues = skip_queues
        self.every_s = every_s
        self.lease_s = lease_s
        self.name = worker_name("ingest")
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def discover(self) -> int:
        async with unit_of_work(self.sessions, self.bus) as session:
            return await discover_recordings(session=session)

    async def run_once(self) -> ClaimedJob | None:
        """Take one due ingest job (after looking for new recordings); None when there is none."""
        async with unit_of_work(self.sessions, self.bus) as session:
            await discover_recordings(session=session)
        async with unit_of_work(self.sessions, self.bus) as session:
            job = await claim_job(
                session=session,
                kind=JobKind.INGEST,
                worker=self.name,
                lease_s=self.lease_s,
                max_attempts=self.max_attempts,
            )
        if job is None:
            return None
        try:
            outcome = await asyncio.to_thread(self._take, job)
        except AudioProblem as problem:
            async with unit_of_work(self.sessions, self.bus) as session:
                status = await retry_or_fail_job(
                    session=session,
                    job=job,
                    reason=problem.reason,
                    retry_s=self.retry_s,
                    max_attempts=self.max_attempts,
                )
            log.warning("recording of call %s not taken (%s): %s", job.linkedid, status, problem.reason)
            return job
        except Exception:
            log.exception("ingesting the recording of call %s failed", job.linkedid)
            async with unit_of_work(self.sessions, self.bus) as session:
                await retry_or_fail_job(
                    session=session,
                    job=job,
                    reason="An unexpected error stopped the ingest; see the server log.",
                    retry_s=self.retry_s,
                    max_attempts=self.max_attempts,
                )
            return job
        async with unit_of_work(self.sessions, self.bus) as session:
            if isinstance(outcome, _NotYet):
                await postpone_job(session=session, job=job, after_s=max(self.settle_s, 0.1), seen_size=outcome.size)
            else:
                stored = await store_recording(
                    session=session,
                    job=job,
                    storage_key=outcome.stored.key,
                    layout=outcome.layout,
                    audio_format=outcome.info.audio_format,
                    channels=outcome.info.channels,
                    sample_rate=outcome.info.sample_rate,
                    duration_s=round(outcome.info.duration_s, 3),
                    size_bytes=outcome.stored.size_bytes,
                    sha256=outcome.stored.sha256,
                    transcribe=self.transcribe,
                    skip_queues=self.skip_queues,
                )
                if not stored:
                    log.warning("the ingest of call %s was taken over by another worker", job.linkedid)
        return job

    def _take(self, job: ClaimedJob) -> _NotYet | _Taken:
        """In a thread: the file(s) of the job checked and copied into the archive, or not complete yet."""
        mixed = self.spool.path_of(job.source_ref)
        split = self.spool.companions(job.source_ref)
        files = [p for p in (mixed, *(split or ())) if p is not None]
        if not files:
            name = job.source_ref.replace("\\", "/").rsplit("/", 1)[-1]
            raise AudioProblem(f"{name} is missing: it has not reached the recordings folder.")
        size = sum(p.stat().st_size for p in files)
        newest = max(p.stat().st_mtime for p in files)
        growing = job.seen_size is not None and size != job.seen_size
        if self.settle_s > 0 and (time.time() - newest < self.settle_s or growing):
            return _NotYet(size)  # still being written or synced: look again once it stood still
        infos = [probe_wav(p) for p in files]
        day = utcnow().strftime("%Y/%m/%d")
        stored = self.archive.put(files[0], f"{day}/{job.recording_id}{files[0].suffix.lower()}")
        if split is not None:
            self.archive.put(split[0], f"{day}/{job.recording_id}-r.wav")
            self.archive.put(split[1], f"{day}/{job.recording_id}-t.wav")
            layout = "split"
        else:
            layout = "stereo" if infos[0].channels == 2 else "mono"
        return _Taken(stored, infos[0], layout)

    async def _loop(self) -> None:
        while True:
            try:
                while await self.run_once() is not None:
                    pass
            except Exception:
                log.exception("the recording ingest failed; trying again")
            await wait_for_wake(self.wake, self.every_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="recording-ingest")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None


def archive_paths(archive: RecordingArchive, storage_key: str, layout: str | None) -> list[Path | None]:
    """The stored files of a recording: the mixed one, then (recorded apart) the customer's and the agent's."""
    paths = [archive.local_path(storage_key)]
    if layout == "split":
        stem = storage_key.rsplit(".", 1)[0]
        paths += [archive.local_path(f"{stem}-r.wav"), archive.local_path(f"{stem}-t.wav")]
    return paths
