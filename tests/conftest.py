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


async def postgres_admin(statement: str) -> None:
    """Run one statement (CREATE/DROP DATABASE) on the PostgreSQL server, outside any transaction."""
    engine = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


def _postgres_admin(statement: str) -> None:
    """The same from a synchronous fixture (no event loop running)."""
    import asyncio

    asyncio.run(postgres_admin(statement))


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A database migrated once for this test run (each worker of a parallel run has its own), to copy."""
    import asyncio

    name = f"crm_tmpl_{uuid.uuid4().hex[:12]}"

    async def migrated() -> None:
        engine = make_engine(f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}")
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()  # a template is copied only while nobody is connected to it

    _postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        asyncio.run(migrated())
        yield name
    finally:
        _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def postgres_database(postgres_template: str) -> Iterator[str]:
    """A database of its own for each test module, a copy of the migrated template: what one module commits (and
    the sequences it moves, which no rollback resets) never meets another module, in whatever order they run."""
    name = f"crm_test_{uuid.uuid4().hex[:12]}"
    _postgres_admin(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
