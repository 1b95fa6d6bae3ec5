"""The kept connection the webhook worker runs its per-batch statements on: the same rows on both databases (on
PostgreSQL through asyncpg directly, compiled once), one statement at a time, and a connection the database
dropped is replaced at the next use."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_core.bus import InMemoryEventBus
from crm_core.db import utcnow
from crm_core.webhooks.models import DELIVERIES
from crm_core.webhooks.sender import WebhookSender
from crm_core.webhooks.worker import HotConnection, WebhookWorker, _claim_statement
from tests.webhooks.conftest import LOCAL, subscribe
from tests.webhooks.receiver import Receiver
from tests.webhooks.test_deliveries import ticket_event


async def _recorded(sessions: async_sessionmaker[AsyncSession], receiver: Receiver, count: int) -> str:
    """`count` pending deliveries of one subscription, written by a recording worker; the subscription's id."""
    subscription = await subscribe(sessions, receiver.url, ["ticket.updated"])
    recorder = WebhookWorker(sessions, WebhookSender(LOCAL), send=False)
    bus = InMemoryEventBus()
    recorder.attach(bus)
    await recorder.start()
    try:
        for number in range(1, count + 1):
            await bus.publish(ticket_event(number))
        await recorder.drain()
    finally:
        await recorder.stop()
        await recorder.sender.close()
    return subscription.id


def _claim_parameters(subscription_id: str, limit: int) -> dict[str, object]:
    now = utcnow()
    return {
        "for_subscription": subscription_id,
        "now": now,
        "limit": limit,
        "claimed_at": now,
        "lease_until": now + timedelta(seconds=60),
    }


async def test_claims_take_each_row_once_and_fill_the_statements_own_values(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], receiver: Receiver
) -> None:
    subscription_id = await _recorded(sessions, receiver, 5)
    hot = HotConnection(engine, custom_plans=True)
    statement = _claim_statement(engine.dialect.name)
    try:
        first = await hot.rows(statement, _claim_parameters(subscription_id, 3))
        second = await hot.rows(statement, _claim_parameters(subscription_id, 3))
        third = await hot.rows(statement, _claim_parameters(subscription_id, 3))
    finally:
        await hot.close()
    assert (len(first), len(second), len(third)) == (3, 2, 0)  # the leased ones are not due again
    ids = [row[0] for row in [*first, *second]]
    assert len(set(ids)) == 5
    assert {row[1] for row in [*first, *second]} == {subscription_id}
    assert {row[4] for row in [*first, *second]} == {1}  # attempts + 1: a value the statement holds itself
    async with sessions() as session:
        statuses = (
            await session.execute(
                select(DELIVERIES.c.status, func.count())
                .where(DELIVERIES.c.subscription_id == subscription_id)
                .group_by(DELIVERIES.c.status)
            )
        ).all()
        await session.execute(delete(DELIVERIES).where(DELIVERIES.c.subscription_id == subscription_id))
        await session.commit()
    assert dict(statuses) == {"sending": 5}


async def test_statements_at_once_on_one_connection_run_one_after_the_other(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], receiver: Receiver
) -> None:
    subscription_id = await _recorded(sessions, receiver, 6)
    hot = HotConnection(engine)
    statement = _claim_statement(engine.dialect.name)
    try:
        taken = await asyncio.gather(*(hot.rows(statement, _claim_parameters(subscription_id, 2)) for _ in range(4)))
    finally:
        await hot.close()
    assert sorted(len(rows) for rows in taken) == [0, 2, 2, 2]
    assert len({row[0] for rows in taken for row in rows}) == 6
    async with sessions() as session:
        await session.execute(delete(DELIVERIES).where(DELIVERIES.c.subscription_id == subscription_id))
        await session.commit()


@pytest.mark.postgres
async def test_a_connection_the_database_dropped_is_replaced_at_the_next_use(
    postgres_database: str, receiver: Receiver
) -> None:
    from crm_core.db import make_engine, make_sessionmaker

    engine = make_engine(postgres_database, pool_size=2)
    sessions = make_sessionmaker(engine)
    hot = HotConnection(engine)
    try:
        subscription_id = await _recorded(sessions, receiver, 2)
        statement = _claim_statement("postgresql")
        assert len(await hot.rows(statement, _claim_parameters(subscription_id, 1))) == 1
        pid = await hot.run(lambda connection: connection.scalar(text("SELECT pg_backend_pid()")))
        async with engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await admin.commit()
        with pytest.raises(Exception):  # whichever error the driver raises for a dropped connection
            await hot.rows(statement, _claim_parameters(subscription_id, 1))
        again = await hot.rows(statement, _claim_parameters(subscription_id, 1))
        assert len(again) == 1  # a new connection, and the row the failed statement did not take
        assert await hot.run(lambda connection: connection.scalar(text("SELECT pg_backend_pid()"))) != pid
    finally:
        await hot.close()
        await engine.dispose()
