"""Migration 0002_user_sessions: existing users keep signing in (session version 1), the models match the
migrated schema, and the step goes down and up again."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_core import migrate
from crm_core.customers.search import SEARCH_SCHEMA_OBJECTS
from crm_core.db import make_engine
from crm_core.models import Base


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index:sqlalchemy.exc.SAWarning")
async def test_existing_users_get_version_one_and_the_models_match(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    try:
        await migrate.upgrade(engine, "0001")
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO users (id, username, display_name, role, password_hash, queues, is_active,"
                    " must_change_password, created_at) VALUES ('u1', 'ann', 'Ann', 'agent', 'x', '[]', 1, 0,"
                    " '2026-01-01 00:00:00')"
                )
            )
        await migrate.upgrade(engine)
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT session_version FROM users"))).scalar_one() == 1
            drift = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True, "include_object": _not_search_schema}),
                    Base.metadata,
                )
            )
        assert drift == []
        await _downgrade(engine, "0001")
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
            columns = await connection.run_sync(lambda sync: [c["name"] for c in inspect(sync).get_columns("users")])
        assert "login_throttles" not in tables and "session_version" not in columns
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()


def _not_search_schema(obj: object, name: str | None, kind: str, reflected: bool, compare_to: object) -> bool:
    # full-text search (customers, transcripts) keeps FTS5 tables and their shadow tables, and customer search a
    # key column and expression indexes of its own, outside the ORM
    return not (
        name in SEARCH_SCHEMA_OBJECTS
        or (kind == "table" and "_fts" in (name or ""))
        or (name or "").startswith("customers_trigram_vocab")
    )


async def _downgrade(engine: AsyncEngine, revision: str) -> None:
    from alembic import command

    config = migrate.alembic_config(engine.url.render_as_string(hide_password=False))

    def run(connection: object) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)
