"""Shared fixtures: real SQLite and PostgreSQL databases (migrated with Alembic), a rollback per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from crm_core import migrate
from crm_core.bus import InMemoryEventBus
from crm_core.db import make_engine
from tests.sqlite_template import migrated_sqlite

POSTGRES_ADMIN_URL = os.environ.get("CRM_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CRM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
FIXTURES = Path(__file__).parent / "fixtures"


class RecordingBus(InMemoryEventBus):
    """The real in-memory bus, keeping every published event so tests can check each one."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[object] = []

    async def publish(self, domain_event: object) -> None:
        self.published.append(domain_event)
        await super().publish(domain_event)

    def of_type(self, event_type: type) -> list[object]:
        return [e for e in self.published if isinstance(e, event_type)]


@pytest.fixture
def bus() -> RecordingBus:
    return RecordingBus()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of its own for this test run (so parallel runs never meet), dropped afterwards."""
    import asyncio

    name = f"crm_test_{uuid.uuid4().hex[:12]}"
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]

    async def _admin(statement: str) -> None:
        engine = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return migrated_sqlite(tmp_path / "crm.db")
    return str(request.getfixturevalue("postgres_database"))


_migrated: set[str] = set()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, **({} if database_url.startswith("sqlite") else {"pool_size": 2}))
    if database_url not in _migrated:
        await migrate.upgrade(engine)
        _migrated.add(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session inside an outer transaction that is rolled back after the test, whatever it committed."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        db = AsyncSession(bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint")
        try:
            yield db
        finally:
            await db.close()
            await transaction.rollback()
