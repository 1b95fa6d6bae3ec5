"""Migration 0014: the api_tokens table matches its model on SQLite and PostgreSQL, and goes down and up again."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_core import migrate
from crm_core.models import Base
from tests.core.test_migration_user_sessions import _downgrade


def _only_tokens(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
    table = name if kind == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table == "api_tokens"


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index:sqlalchemy.exc.SAWarning")
async def test_api_tokens_table_matches_its_model_and_migrates_down_and_up(engine: AsyncEngine) -> None:
    async def drift() -> list[Any]:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True, "include_object": _only_tokens}),
                    Base.metadata,
                )
            )

    async def tables() -> list[str]:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda sync: inspect(sync).get_table_names())

    assert await drift() == []
    # one step back, to the revision before the tokens' (whatever the chain's order)
    before_tokens = ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_revision("0014").down_revision
    assert isinstance(before_tokens, str)
    await _downgrade(engine, before_tokens)
    assert "api_tokens" not in await tables()
    await migrate.upgrade(engine)
    assert "api_tokens" in await tables() and await drift() == []
