"""Missed calls to follow up (who sees which, handled marks one and all) and the customer pool's clock, on
SQLite and PostgreSQL; dispositions a fresh install wraps up with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_core.audit.models import AuditEntry
from crm_core.calls.followups import count_missed, mark_handled, missed_calls
from crm_core.calls.models import CallLeg, CallLog, Disposition
from crm_core.customers.models import Customer
from crm_core.customers.scheduled import PoolReturner
from crm_core.customers.service import assign_owner, touch_interaction
from crm_core.errors import PermissionDenied, ValidationFailed
from crm_core.users.models import Role, User
from tests.core.helpers import make_actor, make_customer

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _call(linkedid: str, queue: str | None, outcome: str, *rang: str, minutes: int = 0) -> CallLog:
    call = CallLog(
        linkedid=linkedid,
        direction="inbound",
        caller_number=f"+1555000{len(linkedid):04d}",
        queue=queue,
        outcome=outcome,
        offered_at=T0 + timedelta(minutes=minutes),
    )
    call.legs = [CallLeg(agent=a, channel=f"Local/{a}@agents-{linkedid};1", seq=i) for i, a in enumerate(rang)]
    return call


async def test_missed_calls_per_queue_and_agent(session: AsyncSession) -> None:
    support_agent = await make_actor(session, Role.AGENT, "a-support", extension="1001")
    await session.execute(update(User).where(User.id == support_agent.user_id).values(queues=["support"]))
    sales_agent = await make_actor(session, Role.AGENT, "a-sales", extension="2001")
    boss = await make_actor(session, Role.SUPERVISOR, "boss")
    session.add_all(
        [
            _call("m.1", "support", "abandoned", minutes=1),
            _call("m.2", "support", "missed", "1001", minutes=2),
            _call("m.3", "sales", "abandoned", "2001", "1001", minutes=3),  # rang 1001 too
            _call("m.4", "sales", "abandoned", minutes=4),
            _call("m.5", "support", "answered", "1001", minutes=5),  # answered: nothing to follow up
        ]
    )
    await session.flush()
    linked = lambda calls: [c.linkedid for c in calls]  # noqa: E731
    assert linked(await missed_calls(session=session, actor=support_agent)) == ["m.3", "m.2", "m.1"]
    assert linked(await missed_calls(session=session, actor=sales_agent)) == ["m.3"]
    assert linked(await missed_calls(session=session, actor=boss)) == ["m.4", "m.3", "m.2", "m.1"]
    assert linked(await missed_calls(session=session, actor=boss, queue="sales")) == ["m.4", "m.3"]
    assert linked(await missed_calls(session=session, actor=boss, agent="1001")) == ["m.3", "m.2"]
    assert await count_missed(session=session, since=T0) == {"support": 2, "sales": 2}

    one = (await missed_calls(session=session, actor=support_agent))[1]
    assert await mark_handled(session=session, actor=support_agent, call_ids=[one.call_id]) == 1
    assert linked(await missed_calls(session=session, actor=support_agent)) == ["m.3", "m.1"]
    # an agent marks only what it follows up: m.4 is not theirs
    m4 = (await missed_calls(session=session, actor=boss, queue="sales"))[0]
    assert await mark_handled(session=session, actor=sales_agent, call_ids=[m4.call_id]) == 0
    assert await mark_handled(session=session, actor=support_agent, everything=True) == 2
    assert linked(await missed_calls(session=session, actor=boss)) == ["m.4"]
    audited = await session.scalars(select(AuditEntry).where(AuditEntry.entity_type == "call"))
    assert len(list(audited)) == 3
    with pytest.raises(ValidationFailed):
        await mark_handled(session=session, actor=boss)
    marketer = await make_actor(session, Role.MARKETER, "mkt")
    with pytest.raises(PermissionDenied):
        await missed_calls(session=session, actor=marketer)


async def test_pool_protection_period_and_return(engine: AsyncEngine) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        first = await make_actor(session, Role.AGENT, "pool-a", extension="3001")
        second = await make_actor(session, Role.AGENT, "pool-b", extension="3002")
        customer = await make_customer(session, "Pooled Person", "+15551239901")
        customer_id = customer.id
    now = T0
    returner = PoolReturner(sessions, protection_days=30, clock=lambda: now)
    async with sessions() as session, session.begin():
        await assign_owner(session=session, actor=first, customer_id=customer_id, owner_id=first.user_id, now=T0)
    async with sessions() as session, session.begin():
        with pytest.raises(PermissionDenied):  # protected: another agent cannot take it
            await assign_owner(session=session, actor=second, customer_id=customer_id, owner_id=second.user_id)
    now = T0 + timedelta(days=20)
    async with sessions() as session, session.begin():
        await touch_interaction(session=session, customer_id=customer_id, at=now)  # a call renews the protection
    now = T0 + timedelta(days=45)
    assert await returner.run_once() == []
    now = T0 + timedelta(days=51)
    assert await returner.run_once() == [customer_id]
    assert await returner.run_once() == []  # once
    async with sessions() as session, session.begin():
        claimed = await assign_owner(session=session, actor=second, customer_id=customer_id, owner_id=second.user_id)
        assert claimed.owner_id == second.user_id
        history = list(
            await session.scalars(select(AuditEntry).where(AuditEntry.entity_id == customer_id).order_by(AuditEntry.at))
        )
        owners = [(e.before or {}).get("owner_id") for e in history if e.action == "update"]
        assert owners == [None, first.user_id, None]  # claimed, returned, claimed again: all kept
    async with sessions() as session, session.begin():  # committed rows: leave the shared database as found
        await session.execute(delete(AuditEntry).where(AuditEntry.entity_id == customer_id))
        await session.execute(delete(Customer).where(Customer.id == customer_id))
        await session.execute(delete(User).where(User.username.in_(["pool-a", "pool-b"])))


async def test_fresh_install_has_dispositions(session: AsyncSession) -> None:
    codes = set(await session.scalars(select(Disposition.code).where(Disposition.active.is_(True))))
    assert {"resolved", "follow_up", "callback", "wrong_number"} <= codes
