import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from crm_core.customers.models import Payment
from crm_core.db import make_sessionmaker, unit_of_work
from crm_core.errors import Conflict, PermissionDenied, ValidationFailed
from crm_core.segments.service import create_segment, quintile_scores, rfm_scores, segment_members
from crm_core.tickets.models import Ticket, TicketLink
from crm_core.tickets.service import (
    create_ticket,
    find_ticket_by_number,
    open_tickets_of,
    update_ticket,
)
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM
from tests.core.helpers import make_actor, make_customer


async def test_ticket_lifecycle(session: AsyncSession) -> None:
    agent = await make_actor(session, Role.AGENT)
    customer = await make_customer(session, "T Customer", "+15551230100")
    first = await create_ticket(session=session, actor=agent, subject="No dial tone", customer_id=customer.id)
    second = await create_ticket(
        session=session, actor=agent, subject="Invoice", customer_id=customer.id, priority="low"
    )
    assert (first.number, second.number) == (1001, 1002)
    assert (await find_ticket_by_number(session=session, number=1002)).id == second.id  # type: ignore[union-attr]
    when = datetime(2026, 5, 1, tzinfo=UTC)
    await update_ticket(session=session, actor=agent, ticket_id=first.id, status="resolved", now=when)
    assert first.resolved_at == when
    assert [t.id for t in await open_tickets_of(session=session, customer_id=customer.id)] == [second.id]
    with pytest.raises(ValidationFailed, match="Status must be one of"):
        await update_ticket(session=session, actor=agent, ticket_id=first.id, status="done")
    with pytest.raises(ValidationFailed, match="subject"):
        await create_ticket(session=session, actor=agent, subject="  ")
    marketer = await make_actor(session, Role.MARKETER)
    with pytest.raises(PermissionDenied):
        await create_ticket(session=session, actor=marketer, subject="x")


async def test_ticket_numbers_stay_unique_when_created_concurrently(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)

    async def _one(i: int) -> int:
        async with unit_of_work(sessions) as session:
            return (await create_ticket(session=session, actor=SYSTEM, subject=f"concurrent {i}")).number

    numbers = await asyncio.gather(*(_one(i) for i in range(8)))
    assert len(set(numbers)) == 8
    async with unit_of_work(sessions) as session:
        assert await session.scalar(select(TicketLink.id)) is None
        for ticket in await session.scalars(select(Ticket).where(Ticket.subject.like("concurrent %"))):
            await session.delete(ticket)


def test_quintiles() -> None:
    assert quintile_scores([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], higher_is_better=True) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert quintile_scores([1, 1, 1], higher_is_better=True) == [1, 1, 1]
    assert quintile_scores([10, 1], higher_is_better=False) == [1, 3]


async def test_rfm_and_saved_segments(session: AsyncSession) -> None:
    marketer = await make_actor(session, Role.MARKETER)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    best = await make_customer(session, "Best", "+15551230110")
    lapsed = await make_customer(session, "Lapsed", "+15551230111")
    small = await make_customer(session, "Small", "+15551230112")
    for days in (1, 5, 9, 20):
        session.add(Payment(customer_id=best.id, amount=Decimal(300), occurred_at=now - timedelta(days=days)))
    session.add(Payment(customer_id=lapsed.id, amount=Decimal(900), occurred_at=now - timedelta(days=300)))
    session.add(Payment(customer_id=small.id, amount=Decimal(5), occurred_at=now - timedelta(days=30)))
    await session.flush()
    scores = {s.customer_id: s for s in await rfm_scores(session=session, actor=marketer, now=now)}
    assert (scores[best.id].recency_days, scores[best.id].frequency, scores[best.id].monetary) == (1, 4, Decimal(1200))
    assert scores[best.id].r > scores[small.id].r > scores[lapsed.id].r
    assert scores[best.id].f > scores[lapsed.id].f
    segment = await create_segment(
        session=session, actor=marketer, name="Loyal", definition={"rfm": {"r_min": 3, "f_min": 3}}
    )
    assert await segment_members(session=session, actor=marketer, segment_id=segment.id, now=now) == [best.id]
    small.sms_opt_out = True
    everyone = await create_segment(session=session, actor=marketer, name="All", definition={})
    members = await segment_members(session=session, actor=marketer, segment_id=everyone.id, now=now)
    assert best.id in members and lapsed.id in members and small.id not in members
    with pytest.raises(Conflict):
        await create_segment(session=session, actor=marketer, name="Loyal", definition={})
    with pytest.raises(ValidationFailed, match=r"rfm\.r_min"):
        await create_segment(session=session, actor=marketer, name="Bad", definition={"rfm": {"r_min": 9}})
    agent = await make_actor(session, Role.AGENT)
    with pytest.raises(PermissionDenied):
        await create_segment(session=session, actor=agent, name="Nope", definition={})
