"""Migration 0015 makes exactly the webhook tables the models describe, on SQLite and PostgreSQL, and goes down."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_core.models import Base


def _webhook_tables(obj: object, name: str | None, kind: str, reflected: bool, compare_to: object) -> bool:
    table = getattr(obj, "table", obj) if kind != "table" else obj
    table_name = name if kind == "table" else getattr(table, "name", "")
    return str(table_name or "").startswith("webhook_")


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index:sqlalchemy.exc.SAWarning")
async def test_the_webhook_tables_match_the_models(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        drift = await connection.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True, "include_object": _webhook_tables}),
                Base.metadata,
            )
        )
    assert {"webhook_subscriptions", "webhook_deliveries"} <= set(tables)
    assert drift == []
