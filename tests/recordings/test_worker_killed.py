"""Several `crm transcribe` workers on PostgreSQL: one killed mid-job (SIGKILL, its Vosk process with it) loses
the job when its lease runs out; another takes it over and the transcript is stored exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core import migrate
from crm_core.calls.models import CallLog
from crm_core.db import make_engine, make_sessionmaker
from crm_core.recordings.models import JobKind, JobStatus, Recording, Transcript
from tests.recordings.helpers import ended_call, ingester, recording_of
from tests.recordings.speech import SENTENCES, speak

pytestmark = pytest.mark.postgres


async def start_worker(database_url: str, tmp: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "CRM_DATABASE_URL": database_url,
        "CRM_DATA_DIR": str(tmp),
        "CRM_RECORDINGS_STORE_DIR": str(tmp / "store"),
        "CRM_SECRET_KEY": "test-secret-key-of-reasonable-length",
        "CRM_TRANSCRIBE_WORKERS": "1",
        "CRM_TRANSCRIBE_LEASE_S": "1.5",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from agent_desktop.cli import main; main()",
        "transcribe",
        env=env,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the worker and its Vosk process die together
    )


async def line_with(worker: asyncio.subprocess.Process, text: str, within: float = 60) -> list[str]:
    """The worker's output lines up to the first one holding `text`."""
    assert worker.stderr is not None
    seen: list[str] = []

    async def read() -> list[str]:
        while True:
            line = (await worker.stderr.readline()).decode()  # type: ignore[union-attr]
            assert line, f"the worker ended; it said: {''.join(seen)}"
            seen.append(line)
            if text in line:
                return seen

    return await asyncio.wait_for(read(), within)


@pytest.fixture
async def pg_sessions(postgres_database: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(postgres_database, pool_size=2)
    await migrate.upgrade(engine)
    maker = make_sessionmaker(engine)
    async with maker() as session, session.begin():
        await session.execute(delete(Recording))
        await session.execute(delete(CallLog))
    try:
        yield maker
    finally:
        await engine.dispose()


async def test_a_worker_killed_mid_job_leaves_it_to_another_and_it_is_transcribed_once(
    pg_sessions: async_sessionmaker[AsyncSession], postgres_database: str, tmp_path: Path
) -> None:
    sessions, database_url = pg_sessions, postgres_database
    (tmp_path / "spool").mkdir()
    speak(" ".join(SENTENCES), tmp_path / "spool" / "long.wav", rate=8000)
    await ended_call(sessions, "77.0", "long.wav")
    assert await ingester(sessions, tmp_path).run_once() is not None
    recording, _ = await recording_of(sessions, "77.0")

    first = await start_worker(database_url, tmp_path)
    try:
        await line_with(first, "started call 77.0")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        await first.wait()
    _, jobs = await recording_of(sessions, "77.0")
    job = next(j for j in jobs if j.kind == JobKind.TRANSCRIBE)
    assert job.status == JobStatus.WORKING and job.finished_at is None  # left claimed by a dead worker
    killed_token = job.claim_token

    second = await start_worker(database_url, tmp_path)
    try:
        said = await line_with(second, "done call 77.0")
    finally:
        second.send_signal(signal.SIGTERM)
        await second.wait()
    assert sum("started call 77.0" in line for line in said) == 1

    _, jobs = await recording_of(sessions, "77.0")
    job = next(j for j in jobs if j.kind == JobKind.TRANSCRIBE)
    assert job.status == JobStatus.DONE and job.claim_token is None and killed_token is not None
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Transcript).where(Transcript.recording_id == recording.id)
        )
        transcript = await session.scalar(select(Transcript).where(Transcript.recording_id == recording.id))
    assert stored == 1 and transcript is not None and transcript.lines
