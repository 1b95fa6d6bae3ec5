"""SLA clocks on tickets: policy choice, reply semantics, pause on pending, outcomes, recompute on policy change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.customers.models import Customer
from crm_core.errors import PermissionDenied, ValidationFailed
from crm_core.sla.models import SlaClock, SlaEscalation
from crm_core.sla.service import (
    active_clocks,
    create_escalation_rule,
    create_policy,
    import_holidays,
    save_calendar,
    ticket_clocks,
    update_policy,
)
from crm_core.tickets.service import TicketFilters, add_message, create_ticket, list_tickets, update_ticket
from crm_core.users.models import Role
from tests.core.helpers import make_actor, make_customer

MONDAY_9 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
OFFICE = [[d, "09:00", "12:00"] for d in range(5)] + [[d, "13:00", "17:00"] for d in range(5)]


def clock_of(clocks: list[SlaClock], kind: str) -> SlaClock:
    (found,) = [c for c in clocks if c.kind == kind]
    return found


async def test_the_most_specific_policy_wins_by_priority_category_and_vip_tier(session: AsyncSession) -> None:
    supervisor = await make_actor(session, Role.SUPERVISOR)
    await create_policy(session=session, actor=supervisor, name="Default", resolution_minutes=600)
    await create_policy(session=session, actor=supervisor, name="Urgent", priority="urgent", resolution_minutes=120)
    await create_policy(
        session=session, actor=supervisor, name="VIP urgent", priority="urgent", vip_tier="gold", resolution_minutes=30
    )
    vip = await make_customer(session, "Gold Customer", "+15551230101")
    (await session.get(Customer, vip.id)).vip_tier = "gold"  # type: ignore[union-attr]
    plain = await make_customer(session, "Plain Customer", "+15551230102")
    targets = []
    for customer, priority in ((plain.id, "normal"), (plain.id, "urgent"), (vip.id, "urgent"), (vip.id, "low")):
        ticket = await create_ticket(
            session=session, actor=supervisor, subject="x", customer_id=customer, priority=priority, now=MONDAY_9
        )
        targets.append(clock_of(await active_clocks(session=session, ticket_id=ticket.id), "resolution").target_minutes)
    assert targets == [600, 120, 30, 600]


async def test_a_reply_meets_first_response_restarts_next_response_and_leaves_resolution_alone(
    session: AsyncSession,
) -> None:
    supervisor = await make_actor(session, Role.SUPERVISOR)
    agent = await make_actor(session, Role.AGENT)
    await save_calendar(session=session, actor=supervisor, team="support", time_zone="Europe/Berlin", blocks=OFFICE)
    await create_policy(
        session=session,
        actor=supervisor,
        name="Standard",
        first_response_minutes=60,
        next_response_minutes=120,
        resolution_minutes=7 * 60,
    )
    ticket = await create_ticket(session=session, actor=agent, subject="Router", team="support", now=MONDAY_9)
    clocks = await active_clocks(session=session, ticket_id=ticket.id)
    assert {c.kind for c in clocks} == {"first_response", "resolution"}
    resolution = clock_of(clocks, "resolution")
    # 7 business hours from Monday 09:00 with a lunch break: Monday 17:00 Berlin
    assert resolution.due_at == datetime(2026, 12, 7, 16, 0, tzinfo=UTC)
    assert ticket.due_at == resolution.due_at
    resolution_before = (resolution.due_at, resolution.used_minutes, resolution.running_since)

    await add_message(session=session, actor=agent, ticket_id=ticket.id, body="internal", kind="note", now=MONDAY_9)
    assert clock_of(await active_clocks(session=session, ticket_id=ticket.id), "first_response").stopped_at is None

    reply_at = MONDAY_9 + timedelta(minutes=40)
    await add_message(session=session, actor=agent, ticket_id=ticket.id, body="Try a reboot", now=reply_at)
    first = clock_of(await ticket_clocks(session=session, ticket_id=ticket.id), "first_response")
    assert (first.status, first.margin_minutes, ticket.first_response_at) == ("met", 20, reply_at)
    active = await active_clocks(session=session, ticket_id=ticket.id)
    next_response = clock_of(active, "next_response")
    # 2 h from 09:40: 09:40-12:00 is 140 min, so 11:40 Berlin
    assert next_response.due_at == datetime(2026, 12, 7, 10, 40, tzinfo=UTC)
    assert (resolution.due_at, resolution.used_minutes, resolution.running_since) == resolution_before

    second_reply = datetime(2026, 12, 7, 12, 30, tzinfo=UTC)  # 13:30 Berlin: 140 + 30 business minutes later
    await add_message(session=session, actor=agent, ticket_id=ticket.id, body="Any luck?", now=second_reply)
    runs = [c for c in await ticket_clocks(session=session, ticket_id=ticket.id) if c.kind == "next_response"]
    assert [(c.status, c.margin_minutes) for c in runs] == [("breached", -50), ("running", None)]
    assert (resolution.due_at, resolution.used_minutes, resolution.running_since) == resolution_before

    resolved_at = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)  # 15:00 Berlin: 5 business hours used
    await update_ticket(session=session, actor=agent, ticket_id=ticket.id, status="resolved", now=resolved_at)
    assert (resolution.status, resolution.margin_minutes) == ("met", 120)
    assert runs[1].status == "cancelled" and await active_clocks(session=session, ticket_id=ticket.id) == []
    assert ticket.due_at is None


async def test_pending_customer_pauses_the_clocks_and_the_paused_time_does_not_count(session: AsyncSession) -> None:
    supervisor = await make_actor(session, Role.SUPERVISOR)
    await create_policy(session=session, actor=supervisor, name="24/7", resolution_minutes=240, warning_percent=50)
    ticket = await create_ticket(session=session, actor=supervisor, subject="Refund", now=MONDAY_9)
    resolution = clock_of(await active_clocks(session=session, ticket_id=ticket.id), "resolution")
    assert (resolution.warn_at, resolution.due_at) == (MONDAY_9 + timedelta(hours=2), MONDAY_9 + timedelta(hours=4))
    await update_ticket(
        session=session, actor=supervisor, ticket_id=ticket.id, status="pending", now=MONDAY_9 + timedelta(hours=1)
    )
    assert (resolution.status, resolution.used_minutes, resolution.due_at, resolution.next_check_at) == (
        "paused",
        60,
        None,
        None,
    )
    await update_ticket(
        session=session, actor=supervisor, ticket_id=ticket.id, status="open", now=MONDAY_9 + timedelta(hours=25)
    )
    assert resolution.status == "running"
    assert resolution.due_at == MONDAY_9 + timedelta(hours=28)  # 3 h left after the day of waiting
    assert resolution.next_check_at == MONDAY_9 + timedelta(hours=26)  # the warning (2 h) is 1 h away
    # on hold pauses too (the default); a policy can choose otherwise
    await update_ticket(
        session=session, actor=supervisor, ticket_id=ticket.id, status="on_hold", now=MONDAY_9 + timedelta(hours=26)
    )
    assert resolution.status == "paused"


async def test_changing_or_switching_off_a_policy_recomputes_open_clocks_and_clears_stale_escalations(
    session: AsyncSession,
) -> None:
    supervisor = await make_actor(session, Role.SUPERVISOR)
    policy = await create_policy(session=session, actor=supervisor, name="Std", resolution_minutes=100)
    rule = await create_escalation_rule(
        session=session, actor=supervisor, name="Bump", trigger="warning", action="raise_priority"
    )
    ticket = await create_ticket(session=session, actor=supervisor, subject="Slow line", now=MONDAY_9)
    resolution = clock_of(await active_clocks(session=session, ticket_id=ticket.id), "resolution")
    # as if the scheduler had warned at 80 minutes
    resolution.warned_at = MONDAY_9 + timedelta(minutes=80)
    session.add(SlaEscalation(rule_id=rule.id, clock_id=resolution.id, ticket_id=ticket.id, trigger="warning"))
    await session.flush()
    now = MONDAY_9 + timedelta(minutes=80)
    await update_policy(session=session, actor=supervisor, policy_id=policy.id, resolution_minutes=400, now=now)
    assert resolution.target_minutes == 400 and resolution.used_minutes == 80
    assert resolution.due_at == MONDAY_9 + timedelta(minutes=400)
    assert resolution.warned_at is None and resolution.next_check_at == MONDAY_9 + timedelta(minutes=300)
    assert await session.scalar(select(SlaEscalation.id).where(SlaEscalation.clock_id == resolution.id)) is None
    await update_policy(session=session, actor=supervisor, policy_id=policy.id, is_active=False, now=now)
    assert (resolution.status, resolution.next_check_at, ticket.due_at) == ("cancelled", None, None)


async def test_policy_calendar_and_rule_input_is_checked(session: AsyncSession) -> None:
    supervisor = await make_actor(session, Role.SUPERVISOR)
    agent = await make_actor(session, Role.AGENT)
    with pytest.raises(PermissionDenied):
        await create_policy(session=session, actor=agent, name="x", resolution_minutes=10)
    with pytest.raises(ValidationFailed, match="resolution_minutes must be a whole number") as refused:
        await create_policy(session=session, actor=supervisor, name="x", resolution_minutes=-5)
    assert refused.value.details["field"] == "resolution_minutes"
    with pytest.raises(ValidationFailed, match="warning_percent"):
        await create_policy(session=session, actor=supervisor, name="x", warning_percent=100)
    with pytest.raises(ValidationFailed, match="paused_statuses"):
        await create_policy(session=session, actor=supervisor, name="x", paused_statuses=["resolved"])
    with pytest.raises(ValidationFailed, match="needs a target user"):
        await create_escalation_rule(session=session, actor=supervisor, name="r", trigger="breach", action="notify")
    with pytest.raises(ValidationFailed, match="time zone"):
        await save_calendar(session=session, actor=supervisor, team="t", time_zone="Nowhere/City", blocks=OFFICE)
    calendar = await save_calendar(
        session=session, actor=supervisor, team="t", time_zone="Europe/Berlin", blocks=OFFICE
    )
    with pytest.raises(ValidationFailed, match="BEGIN:VCALENDAR"):
        await import_holidays(session=session, actor=supervisor, calendar_id=calendar.id, content="nonsense")
    assert calendar.holidays == []
    added = await import_holidays(
        session=session,
        actor=supervisor,
        calendar_id=calendar.id,
        content="BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20261224\nEND:VEVENT\nEND:VCALENDAR\n",
    )
    assert [d.isoformat() for d in added] == calendar.holidays == ["2026-12-24"]


async def test_breaching_soon_and_overdue_views_follow_the_clocks(session: AsyncSession) -> None:
    supervisor = await make_actor(session, Role.SUPERVISOR)
    await create_policy(session=session, actor=supervisor, name="24/7", resolution_minutes=100)
    calm, warned, late = [
        await create_ticket(session=session, actor=supervisor, subject=s, now=MONDAY_9) for s in ("a", "b", "c")
    ]
    (clock_of(await active_clocks(session=session, ticket_id=warned.id), "resolution")).warned_at = MONDAY_9
    late_clock = clock_of(await active_clocks(session=session, ticket_id=late.id), "resolution")
    late_clock.warned_at = late_clock.breached_at = MONDAY_9
    await session.flush()

    async def view(name: str) -> list[int]:
        found = await list_tickets(session=session, actor=supervisor, filters=TicketFilters(view=name, sort="number"))
        return [row.ticket.number for row in found.rows]

    assert await view("breaching") == [warned.number]
    assert await view("overdue") == [late.number]
    assert calm.number in await view("all")
    with pytest.raises(ValidationFailed, match="sort must be one of"):
        await list_tickets(session=session, actor=supervisor, filters=TicketFilters(sort="subject"))
