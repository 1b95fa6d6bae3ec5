"""Transcription workers: jobs claimed from the database (several processes may run them), recognised by Vosk in a
process pool, each transcript stored once with its job's end; a worker that dies mid-job loses its lease and the
job is taken over; a bad recording is failed with its reason and the next one goes on."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.bus import EventBus
from crm_core.db import unit_of_work
from crm_core.recordings.models import JobKind
from crm_core.recordings.service import (
    ClaimedJob,
    claim_job,
    renew_lease,
    retry_or_fail_job,
    store_transcript,
)
from crm_core.tasks import cancel_and_wait, wait_for_wake
from recordings.ingest import archive_paths, worker_name
from recordings.store import RecordingArchive
from recordings.vosk_engine import AudioSide, TranscriptionError, load_model, transcribe

log = logging.getLogger(__name__)


def sides_of(archive: RecordingArchive, job: ClaimedJob) -> list[AudioSide]:
    """What to recognise: a mono file as is; a stereo one channel by channel (MixMonitor's D option puts what it
    heard from the caller's channel left, what it sent to it right); the r()/t() files each as their speaker."""
    if job.storage_key is None:
        raise TranscriptionError("The recording is not in storage.")
    paths = archive_paths(archive, job.storage_key, job.layout)
    if any(p is None for p in paths):
        raise TranscriptionError("The recording's file is missing from storage.")
    if job.layout == "split":
        return [AudioSide(str(paths[1]), None, "customer"), AudioSide(str(paths[2]), None, "agent")]
    if job.layout == "stereo":
        return [AudioSide(str(paths[0]), 0, "customer"), AudioSide(str(paths[0]), 1, "agent")]
    return [AudioSide(str(paths[0]))]


class Transcriber:
    """Claims up to `workers` transcription jobs at a time and runs them in a pool of as many Vosk processes."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        archive: RecordingArchive,
        model_path: Path,
        workers: int = 1,
        bus: EventBus | None = None,
        lease_s: float = 60.0,
        retry_s: float = 10.0,
        max_attempts: int = 3,
        every_s: float = 2.0,
        on_event: Callable[[str, ClaimedJob], None] | None = None,
        pool: ProcessPoolExecutor | None = None,
    ) -> None:
        self.sessions = sessions
        self.archive = archive
        self.model_path = model_path
        self.workers = max(1, workers)
        self.bus = bus
        self.lease_s = lease_s
        self.retry_s = retry_s
        self.max_attempts = max_attempts
        self.every_s = every_s
        self.on_event = on_event or (lambda _what, _job: None)
        self.name = worker_name("transcribe")
        self.wake = asyncio.Event()
        self._pool: ProcessPoolExecutor | None = pool  # given: shared, its owner shuts it down
        self._own_pool = pool is None
        self._task: asyncio.Task[None] | None = None
        self.stored = 0
        # where the time went, for the benchmark: processor seconds in the pool (sox, recogniser) and wall
        # seconds this process spent on the database (claims, transcripts stored)
        self.spent: dict[str, float] = {"sox_cpu": 0.0, "recognise_cpu": 0.0, "database": 0.0}
        # per pool process (pid): jobs it ran, and how often it had loaded the model (1: once, at its start)
        self.jobs_per_process: dict[int, int] = {}
        self.model_loads: dict[int, int] = {}

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the parent runs an event loop and database threads a fork would copy mid-step
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=load_model,
                initargs=(str(self.model_path),),
            )
        return self._pool

    async def _claim(self) -> ClaimedJob | None:
        started = time.perf_counter()
        try:
            return await self._claim_one()
        finally:
            self.spent["database"] += time.perf_counter() - started

    async def _claim_one(self) -> ClaimedJob | None:
        async with unit_of_work(self.sessions, self.bus) as session:
            return await claim_job(
                session=session,
                kind=JobKind.TRANSCRIBE,
                worker=self.name,
                lease_s=self.lease_s,
                max_attempts=self.max_attempts,
            )

    async def _keep_lease(self, job: ClaimedJob) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                async with unit_of_work(self.sessions) as session:
                    if not await renew_lease(session=session, job=job, lease_s=self.lease_s):
                        log.warning("transcription of call %s was taken over by another worker", job.linkedid)
                        return
            except Exception:
                log.exception("renewing the lease of transcription job %s failed", job.job_id)

    async def _fail(self, job: ClaimedJob, reason: str) -> None:
        async with unit_of_work(self.sessions, self.bus) as session:
            status = await retry_or_fail_job(
                session=session, job=job, reason=reason, retry_s=self.retry_s, max_attempts=self.max_attempts
            )
        log.warning("transcription of call %s not done (%s): %s", job.linkedid, status, reason)
        self.on_event("failed", job)

    async def run_job(self, job: ClaimedJob) -> None:
        """Recognise one claimed job in the pool and store its transcript (or its failure)."""
        self.on_event("started", job)
        keeper = asyncio.create_task(self._keep_lease(job))
        try:
            sides = await asyncio.to_thread(sides_of, self.archive, job)  # an S3 store fetches the files first
            loop = asyncio.get_running_loop()
            result: dict[str, Any] = await loop.run_in_executor(self._ensure_pool(), transcribe, sides)
        except TranscriptionError as exc:
            await self._fail(job, str(exc))
            return
        except BrokenProcessPool:
            # a pool process died (killed, out of memory): a new pool; the job is tried again
            log.error("a transcription process died during call %s; restarting the pool", job.linkedid)
            self._drop_pool()
            await self._fail(job, "The transcription process stopped during this recording.")
            return
        except Exception:
            log.exception("transcription of call %s failed", job.linkedid)
            await self._fail(job, "An unexpected error stopped the transcription; see the server log.")
            return
        finally:
            keeper.cancel()
        self.spent["sox_cpu"] += result.get("cpu", {}).get("sox", 0.0)
        self.spent["recognise_cpu"] += result.get("cpu", {}).get("recognise", 0.0)
        if "process" in result:
            pid = int(result["process"]["pid"])
            self.jobs_per_process[pid] = self.jobs_per_process.get(pid, 0) + 1
            self.model_loads[pid] = int(result["process"]["model_loads"])
        started = time.perf_counter()
        async with unit_of_work(self.sessions, self.bus) as session:
            transcript = await store_transcript(
                session=session,
                job=job,
                lines=result["lines"],
                model=result["model"],
                audio_s=result["audio_s"],
                took_s=result["took_s"],
            )
        self.spent["database"] += time.perf_counter() - started
        if transcript is None:
            log.warning("transcription of call %s finished after another worker took it over", job.linkedid)
            return
        self.stored += 1
        self.on_event("done", job)

    async def run_pending(self) -> int:
        """Run every due job until none is left; how many were run. One job more than there are Vosk processes
        is handed to the pool, so that a process that finishes starts the next file at once instead of idling
        while this process stores the transcript and claims the next job (no gaps, no idle tail)."""
        running: set[asyncio.Task[None]] = set()
        ran = 0
        while True:
            while len(running) < self.workers + 1:
                job = await self._claim()
                if job is None:
                    break
                running.add(asyncio.create_task(self.run_job(job)))
                ran += 1
            if not running:
                return ran
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_pending()
            except Exception:
                log.exception("the transcription worker failed; trying again")
            await wait_for_wake(self.wake, self.every_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="transcriber")

    def _drop_pool(self) -> None:
        self._own_pool = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._pool is not None and self._own_pool:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)
