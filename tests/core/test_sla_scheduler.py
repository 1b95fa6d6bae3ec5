"""The SLA scheduler with a controlled clock: warnings, breaches and escalations fire exactly once, also with two
schedulers racing on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_core.audit.models import AuditEntry
from crm_core.db import make_engine, make_sessionmaker, unit_of_work
from crm_core.sla.events import SlaClockBreached, SlaClockWarned, TicketEscalated
from crm_core.sla.models import SlaCalendar, SlaEscalation, SlaEscalationRule, SlaPolicy
from crm_core.sla.scheduler import SlaScheduler
from crm_core.sla.service import create_escalation_rule, create_policy, save_calendar
from crm_core.tickets.events import TicketChanged
from crm_core.tickets.models import Ticket
from crm_core.tickets.service import create_ticket
from crm_core.users.models import Role, User
from crm_core.users.service import SYSTEM, Actor, create_user
from tests.conftest import RecordingBus

# Monday 7 Dec 2026, 16:00 in Berlin; the team works 09:00-17:00 on weekdays
OPENED = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
BERLIN_HOURS = [[d, "09:00", "17:00"] for d in range(5)]


def berlin(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC)


@dataclass
class Desk:
    sessions: async_sessionmaker[AsyncSession]
    agent: Actor
    supervisor: Actor
    team: str
    ticket_ids: list[str] = field(default_factory=list)
    now: list[datetime] = field(default_factory=lambda: [OPENED])

    def clock(self) -> Callable[[], datetime]:
        return lambda: self.now[0]


async def _cleanup(sessions: async_sessionmaker[AsyncSession], desk: Desk) -> None:
    async with unit_of_work(sessions) as session:
        await session.execute(delete(Ticket).where(Ticket.id.in_(desk.ticket_ids)))
        await session.execute(delete(SlaEscalationRule))
        await session.execute(delete(SlaPolicy))
        await session.execute(delete(SlaCalendar).where(SlaCalendar.team == desk.team))
        await session.execute(delete(User).where(User.id.in_([desk.agent.user_id, desk.supervisor.user_id])))


async def _desk(engine: AsyncEngine, tickets: int) -> Desk:
    sessions = make_sessionmaker(engine)
    tag = uuid.uuid4().hex[:8]
    async with unit_of_work(sessions) as session:
        agent = await create_user(
            session=session, actor=SYSTEM, username=f"agent-{tag}", password="a long password", role=Role.AGENT
        )
        boss = await create_user(
            session=session, actor=SYSTEM, username=f"boss-{tag}", password="a long password", role=Role.SUPERVISOR
        )
        desk = Desk(sessions, Actor.of(agent), Actor.of(boss), team=f"support-{tag}")
        await save_calendar(
            session=session, actor=desk.supervisor, team=desk.team, time_zone="Europe/Berlin", blocks=BERLIN_HOURS
        )
        # first response 120 business minutes (warning at 75 % = 90), resolution 240 (warning at 180)
        await create_policy(
            session=session, actor=desk.supervisor, name="Standard", first_response_minutes=120, resolution_minutes=240
        )
        await create_escalation_rule(
            session=session, actor=desk.supervisor, name="Bump", trigger="warning", action="raise_priority"
        )
        await create_escalation_rule(
            session=session,
            actor=desk.supervisor,
            name="To the supervisor",
            trigger="breach",
            action="reassign",
            target_user_id=boss.id,
        )
        await create_escalation_rule(
            session=session,
            actor=desk.supervisor,
            name="Tell the supervisor",
            trigger="breach",
            action="notify",
            target_user_id=boss.id,
        )
        for i in range(tickets):
            ticket = await create_ticket(
                session=session,
                actor=desk.agent,
                subject=f"Line down {i}",
                team=desk.team,
                assignee_id=agent.id,
                now=OPENED,
            )
            desk.ticket_ids.append(ticket.id)
    return desk


@pytest.fixture
async def one_ticket_desk(engine: AsyncEngine) -> AsyncIterator[Desk]:
    desk = await _desk(engine, 1)
    try:
        yield desk
    finally:
        await _cleanup(desk.sessions, desk)


async def test_a_ticket_crosses_its_warning_and_breach_and_each_fires_once(
    one_ticket_desk: Desk, bus: RecordingBus
) -> None:
    desk = one_ticket_desk
    scheduler = SlaScheduler(desk.sessions, bus, clock=desk.clock())
    ticks = [
        (berlin(7, 16, 50), []),
        (berlin(8, 0, 0), []),  # midnight: the team is off, nothing is due
        (berlin(8, 9, 29), []),
        (berlin(8, 9, 30), [("warned", "first_response")]),  # 60 min Monday + 30 min Tuesday = 90 (75 %)
        (berlin(8, 9, 45), []),
        (berlin(8, 10, 1), [("breached", "first_response")]),
        (berlin(8, 10, 2), []),
        (berlin(8, 12, 0), [("warned", "resolution"), ("breached", "resolution")]),  # 180 and 240 minutes
        (berlin(8, 12, 5), []),
        (berlin(9, 12, 0), []),
    ]
    for when, expected in ticks:
        before = len(bus.published)
        desk.now[0] = when
        await scheduler.run_once()
        fired = [
            ("warned" if isinstance(e, SlaClockWarned) else "breached", e.kind)
            for e in bus.published[before:]
            if isinstance(e, SlaClockWarned | SlaClockBreached)
        ]
        assert sorted(fired) == sorted(expected), when
    warned = bus.of_type(SlaClockWarned)
    assert all(e.at in (berlin(8, 9, 30), berlin(8, 12, 0)) for e in warned)  # type: ignore[attr-defined]
    escalated = bus.of_type(TicketEscalated)
    assert sorted((e.clock_kind, e.action) for e in escalated) == [  # type: ignore[attr-defined]
        ("first_response", "notify"),
        ("first_response", "raise_priority"),
        ("first_response", "reassign"),
        ("resolution", "notify"),
        ("resolution", "raise_priority"),
        ("resolution", "reassign"),
    ]
    # the ticket's people were told of each change a rule made; the first reassign told the agent it lost it too
    changed = bus.of_type(TicketChanged)
    assert sorted(e.change for e in changed) == ["assignee_id", "assignee_id", "priority", "priority"]  # type: ignore[attr-defined]
    first_reassign = next(e for e in changed if e.change == "assignee_id")  # type: ignore[attr-defined]
    assert set(first_reassign.audience) == {desk.agent.user_id, desk.supervisor.user_id}  # type: ignore[attr-defined]
    # the first breach went to the assignee (the agent); after the reassign, the supervisor is the assignee
    breached = bus.of_type(SlaClockBreached)
    assert [e.kind for e in breached] == ["first_response", "resolution"]  # type: ignore[attr-defined]
    async with unit_of_work(desk.sessions) as session:
        ticket = await session.get(Ticket, desk.ticket_ids[0])
        assert ticket is not None
        assert (ticket.priority, ticket.assignee_id) == ("urgent", desk.supervisor.user_id)  # normal→high→urgent
        assert await session.scalar(select(func.count()).select_from(SlaEscalation)) == 6
        audited = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.entity_id == ticket.id, AuditEntry.actor_id.is_(None))
            )
        )
        assert len([a for a in audited if a.after and "escalation" in a.after]) == 6


@pytest.mark.postgres
async def test_two_schedulers_on_postgresql_fire_every_warning_breach_and_escalation_once(
    postgres_database: str,
) -> None:
    from crm_core import migrate

    engines = [make_engine(postgres_database, pool_size=3) for _ in range(2)]
    await migrate.upgrade(engines[0])
    desk = await _desk(engines[0], 30)
    buses = [RecordingBus(), RecordingBus()]
    try:
        schedulers = [
            SlaScheduler(make_sessionmaker(engine), bus, clock=desk.clock(), batch_size=7)
            for engine, bus in zip(engines, buses, strict=True)
        ]
        ticks = {berlin(8, 9, 30): 30, berlin(8, 10, 1): 30, berlin(8, 10, 30): 0, berlin(8, 12, 0): 30}
        for when, due in ticks.items():
            desk.now[0] = when
            handled = await asyncio.gather(*(s.run_once() for s in schedulers))
            print(f"{when.isoformat()}: clocks handled by each scheduler {handled}")
            assert sum(handled) == due
        published = buses[0].published + buses[1].published
        warned = [e.clock_id for e in published if isinstance(e, SlaClockWarned)]
        breached = [e.clock_id for e in published if isinstance(e, SlaClockBreached)]
        escalations = [(e.rule_id, e.ticket_id, e.clock_kind) for e in published if isinstance(e, TicketEscalated)]
        assert len(warned) == len(set(warned)) == 60  # 30 tickets x (first response, resolution)
        assert len(breached) == len(set(breached)) == 60
        assert len(escalations) == len(set(escalations)) == 180  # 3 rules x 60 clocks
        async with unit_of_work(desk.sessions) as session:
            assert await session.scalar(select(func.count()).select_from(SlaEscalation)) == 180
    finally:
        await _cleanup(desk.sessions, desk)
        for engine in engines:
            await engine.dispose()
