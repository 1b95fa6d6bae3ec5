"""SLA clocks of tickets: which policy applies, starting, pausing, resuming and stopping clocks on the ticket's
events, recomputing open tickets when a policy changes; calendars, policies and escalation rules (supervisors)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.customers.models import Customer
from crm_core.db import utcnow
from crm_core.errors import NotFound
from crm_core.sla.calendar import (
    ALWAYS_OPEN,
    BusinessCalendar,
    add_business_minutes,
    business_minutes_between,
    make_calendar,
    parse_ical_holidays,
)
from crm_core.sla.errors import InvalidPolicy
from crm_core.sla.models import (
    DEFAULT_PAUSED_STATUSES,
    SlaCalendar,
    SlaClock,
    SlaEscalation,
    SlaEscalationRule,
    SlaPolicy,
)
from crm_core.tickets.models import CLOSED_STATUSES, OPEN_STATUSES, PRIORITIES, Ticket
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

CLOCK_KINDS = ("first_response", "next_response", "resolution")
CLOCK_LABELS = {"first_response": "First response", "next_response": "Next response", "resolution": "Resolution"}
TRIGGERS = ("warning", "breach")
ACTIONS = ("reassign", "raise_priority", "notify")
POLICY_FIELDS = (
    "name",
    "is_active",
    "position",
    "priority",
    "category",
    "vip_tier",
    "calendar_id",
    "first_response_minutes",
    "next_response_minutes",
    "resolution_minutes",
    "warning_percent",
    "paused_statuses",
)
RECOMPUTE_BATCH = 500


# ---- calendars ---------------------------------------------------------------------------------------------------


def calendar_of(row: SlaCalendar | None) -> BusinessCalendar:
    if row is None:
        return ALWAYS_OPEN
    return make_calendar(
        time_zone=row.time_zone,
        blocks=[(int(b[0]), str(b[1]), str(b[2])) for b in row.blocks],
        holidays=[date.fromisoformat(str(d)) for d in row.holidays],
    )


async def load_calendar(*, session: AsyncSession, calendar_id: str | None) -> BusinessCalendar:
    if calendar_id is None:
        return ALWAYS_OPEN
    return calendar_of(await session.get(SlaCalendar, calendar_id))


async def save_calendar(
    *,
    session: AsyncSession,
    actor: Actor,
    team: str,
    time_zone: str,
    blocks: Sequence[Sequence[Any]],
    holidays: Iterable[date] = (),
) -> SlaCalendar:
    """Create or replace a team's calendar (checked first), then recompute the open tickets' clocks."""
    require_role(actor, Role.SUPERVISOR)
    if not team.strip():
        raise InvalidPolicy("A calendar needs a team.", field="team")
    rows = []
    for block in blocks:
        if len(block) != 3:
            raise InvalidPolicy("Each block is [weekday, start, end].", field="blocks")
        rows.append((block[0], block[1], block[2]))
    checked = make_calendar(time_zone=time_zone, blocks=rows, holidays=holidays)
    row = await session.scalar(select(SlaCalendar).where(SlaCalendar.team == team.strip()))
    before = None if row is None else {"time_zone": row.time_zone, "blocks": row.blocks, "holidays": row.holidays}
    if row is None:
        row = SlaCalendar(team=team.strip())
        session.add(row)
    row.time_zone = checked.time_zone
    row.blocks = [[b.weekday, b.start.strftime("%H:%M"), b.end.strftime("%H:%M")] for b in checked.blocks]
    row.holidays = sorted(d.isoformat() for d in checked.holidays)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create" if before is None else "update",
        entity_type="sla_calendar",
        entity_id=row.id,
        before=before,
        after={"team": row.team, "time_zone": row.time_zone, "blocks": row.blocks, "holidays": row.holidays},
    )
    await recompute_open_clocks(session=session)
    return row


async def import_holidays(*, session: AsyncSession, actor: Actor, calendar_id: str, content: str | bytes) -> list[date]:
    """Add the all-day events of an iCal file to a calendar's holidays; a bad file changes nothing."""
    require_role(actor, Role.SUPERVISOR)
    row = await session.get(SlaCalendar, calendar_id)
    if row is None:
        raise NotFound("No such calendar.", calendar_id=calendar_id)
    added = parse_ical_holidays(content)
    known = {date.fromisoformat(str(d)) for d in row.holidays}
    await save_calendar(
        session=session,
        actor=actor,
        team=row.team,
        time_zone=row.time_zone,
        blocks=row.blocks,
        holidays=known | set(added),
    )
    return added


# ---- policies ----------------------------------------------------------------------------------------------------


def _check_policy(values: dict[str, Any]) -> None:
    unknown = set(values) - set(POLICY_FIELDS)
    if unknown:
        raise InvalidPolicy(f"Unknown policy field {sorted(unknown)[0]!r}.", field=sorted(unknown)[0])
    if "name" in values and not str(values["name"] or "").strip():
        raise InvalidPolicy("A policy needs a name.", field="name")
    for name in ("first_response_minutes", "next_response_minutes", "resolution_minutes"):
        value = values.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise InvalidPolicy(f"{name} must be a whole number of minutes above 0, or empty.", field=name)
    if "warning_percent" in values:
        value = values["warning_percent"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 99:
            raise InvalidPolicy("warning_percent must be a whole number from 1 to 99.", field="warning_percent")
    if values.get("priority") is not None and values["priority"] not in PRIORITIES:
        raise InvalidPolicy(f"priority must be one of {', '.join(PRIORITIES)}, or empty.", field="priority")
    if "paused_statuses" in values:
        paused = values["paused_statuses"]
        allowed = set(OPEN_STATUSES)
        if not isinstance(paused, list) or not all(isinstance(s, str) and s in allowed for s in paused):
            raise InvalidPolicy(
                f"paused_statuses must list statuses among {', '.join(OPEN_STATUSES)}.", field="paused_statuses"
            )


def _policy_snapshot(policy: SlaPolicy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in POLICY_FIELDS}


async def create_policy(
    *, session: AsyncSession, actor: Actor, now: datetime | None = None, **values: Any
) -> SlaPolicy:
    require_role(actor, Role.SUPERVISOR)
    values.setdefault("paused_statuses", list(DEFAULT_PAUSED_STATUSES))
    _check_policy(values)
    if "name" not in values:
        raise InvalidPolicy("A policy needs a name.", field="name")
    policy = SlaPolicy(**values)
    session.add(policy)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="sla_policy",
        entity_id=policy.id,
        after=_policy_snapshot(policy),
    )
    await recompute_open_clocks(session=session, now=now)
    return policy


async def update_policy(
    *, session: AsyncSession, actor: Actor, policy_id: str, now: datetime | None = None, **changes: Any
) -> SlaPolicy:
    """Change (or switch off, is_active=False) a policy; the open tickets' clocks are recomputed at once."""
    require_role(actor, Role.SUPERVISOR)
    _check_policy(changes)
    policy = await session.get(SlaPolicy, policy_id)
    if policy is None:
        raise NotFound("No such SLA policy.", policy_id=policy_id)
    before = _policy_snapshot(policy)
    for name, value in changes.items():
        setattr(policy, name, value)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="sla_policy",
        entity_id=policy.id,
        before=before,
        after=_policy_snapshot(policy),
    )
    await recompute_open_clocks(session=session, now=now)
    return policy


async def list_policies(*, session: AsyncSession, actor: Actor) -> list[SlaPolicy]:
    require_role(actor, Role.SUPERVISOR)
    return list(await session.scalars(select(SlaPolicy).order_by(SlaPolicy.position, SlaPolicy.name)))


async def create_escalation_rule(
    *,
    session: AsyncSession,
    actor: Actor,
    name: str,
    trigger: str,
    action: str,
    policy_id: str | None = None,
    clock_kind: str | None = None,
    target_user_id: str | None = None,
) -> SlaEscalationRule:
    require_role(actor, Role.SUPERVISOR)
    if trigger not in TRIGGERS:
        raise InvalidPolicy(f"trigger must be one of {', '.join(TRIGGERS)}.", field="trigger")
    if action not in ACTIONS:
        raise InvalidPolicy(f"action must be one of {', '.join(ACTIONS)}.", field="action")
    if clock_kind is not None and clock_kind not in CLOCK_KINDS:
        raise InvalidPolicy(f"clock_kind must be one of {', '.join(CLOCK_KINDS)}, or empty.", field="clock_kind")
    if action in ("reassign", "notify") and not target_user_id:
        raise InvalidPolicy(f"A {action} rule needs a target user.", field="target_user_id")
    rule = SlaEscalationRule(
        name=name.strip() or action,
        trigger=trigger,
        action=action,
        policy_id=policy_id,
        clock_kind=clock_kind,
        target_user_id=target_user_id,
    )
    session.add(rule)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="sla_escalation_rule",
        entity_id=rule.id,
        after={"name": rule.name, "trigger": trigger, "action": action, "policy_id": policy_id},
    )
    return rule


async def select_policy(
    *, session: AsyncSession, ticket: Ticket, policies: Sequence[SlaPolicy] | None = None
) -> SlaPolicy | None:
    """The most specific active policy matching the ticket's priority, category and customer's VIP tier (the lower
    position first among equally specific ones)."""
    if policies is None:
        policies = list(await session.scalars(select(SlaPolicy).where(SlaPolicy.is_active.is_(True))))
    vip_tier = None
    if ticket.customer_id and any(p.vip_tier for p in policies):
        vip_tier = await session.scalar(select(Customer.vip_tier).where(Customer.id == ticket.customer_id))
    best: tuple[int, int, str] | None = None
    chosen = None
    for policy in policies:
        if not policy.is_active:
            continue
        criteria = ((policy.priority, ticket.priority), (policy.category, ticket.category), (policy.vip_tier, vip_tier))
        if any(wanted is not None and wanted != actual for wanted, actual in criteria):
            continue
        rank = (-sum(wanted is not None for wanted, _ in criteria), policy.position, policy.id)
        if best is None or rank < best:
            best, chosen = rank, policy
    return chosen


def _target(policy: SlaPolicy, kind: str) -> int | None:
    value: int | None = getattr(policy, f"{kind}_minutes")
    return value


async def _calendar_id_for(*, session: AsyncSession, ticket: Ticket, policy: SlaPolicy) -> str | None:
    if ticket.team:
        team_calendar = await session.scalar(select(SlaCalendar.id).where(SlaCalendar.team == ticket.team))
        if team_calendar is not None:
            return team_calendar
    return policy.calendar_id


# ---- one clock ---------------------------------------------------------------------------------------------------


def used_minutes_now(clock: SlaClock, calendar: BusinessCalendar, now: datetime) -> float:
    if clock.running_since is None:
        return clock.used_minutes
    return clock.used_minutes + business_minutes_between(calendar, clock.running_since, now)


def remaining_minutes(clock: SlaClock, calendar: BusinessCalendar, now: datetime) -> float:
    """Business minutes left (negative when late)."""
    return clock.target_minutes - used_minutes_now(clock, calendar, now)


def _schedule(clock: SlaClock, calendar: BusinessCalendar) -> None:
    """Due and warning instants of a running clock from its current run; the scheduler's next look."""
    assert clock.running_since is not None
    warn_after = clock.target_minutes * clock.warning_percent / 100
    clock.due_at = add_business_minutes(
        calendar, clock.running_since, max(clock.target_minutes - clock.used_minutes, 0)
    )
    clock.warn_at = add_business_minutes(calendar, clock.running_since, max(warn_after - clock.used_minutes, 0))
    _set_next_check(clock)


def _set_next_check(clock: SlaClock) -> None:
    if clock.stopped_at is not None or clock.running_since is None:
        clock.next_check_at = None
    elif clock.warned_at is None:
        clock.next_check_at = clock.warn_at
    elif clock.breached_at is None:
        clock.next_check_at = clock.due_at
    else:
        clock.next_check_at = None


def _pause(clock: SlaClock, calendar: BusinessCalendar, now: datetime) -> None:
    clock.used_minutes = used_minutes_now(clock, calendar, now)
    clock.running_since = None
    clock.status = "paused"
    clock.due_at = clock.warn_at = None
    _set_next_check(clock)


def _resume(clock: SlaClock, calendar: BusinessCalendar, now: datetime) -> None:
    clock.running_since = now
    clock.status = "running"
    _schedule(clock, calendar)


def _stop(clock: SlaClock, calendar: BusinessCalendar, now: datetime, *, cancelled: bool = False) -> None:
    used = used_minutes_now(clock, calendar, now)
    clock.used_minutes = used
    clock.running_since = None
    clock.stopped_at = now
    clock.margin_minutes = clock.target_minutes - used
    if cancelled:
        clock.status = "cancelled"
    else:
        clock.status = "met" if used <= clock.target_minutes else "breached"
    _set_next_check(clock)


async def _start(
    *, session: AsyncSession, ticket: Ticket, policy: SlaPolicy, kind: str, now: datetime, calendar_id: str | None
) -> SlaClock | None:
    target = _target(policy, kind)
    if target is None:
        return None
    calendar = await load_calendar(session=session, calendar_id=calendar_id)
    clock = SlaClock(
        ticket_id=ticket.id,
        kind=kind,
        policy_id=policy.id,
        calendar_id=calendar_id,
        target_minutes=float(target),
        warning_percent=policy.warning_percent,
        used_minutes=0.0,
        started_at=now,
        status="running",
    )
    if ticket.status in (policy.paused_statuses or []):
        clock.status = "paused"
    else:
        clock.running_since = now
        _schedule(clock, calendar)
    session.add(clock)
    return clock


async def active_clocks(*, session: AsyncSession, ticket_id: str) -> list[SlaClock]:
    query = select(SlaClock).where(SlaClock.ticket_id == ticket_id, SlaClock.stopped_at.is_(None))
    return list(await session.scalars(query.order_by(SlaClock.started_at)))


async def ticket_clocks(*, session: AsyncSession, ticket_id: str) -> list[SlaClock]:
    """Every clock of a ticket, the active ones and the stopped ones with their outcomes, in start order."""
    query = select(SlaClock).where(SlaClock.ticket_id == ticket_id).order_by(SlaClock.started_at, SlaClock.kind)
    return list(await session.scalars(query))


def _mirror_due(ticket: Ticket, clocks: Iterable[SlaClock]) -> None:
    resolution = [c for c in clocks if c.kind == "resolution" and c.stopped_at is None]
    ticket.due_at = resolution[0].due_at if resolution else None


# ---- the ticket's events -----------------------------------------------------------------------------------------


async def ticket_opened(*, session: AsyncSession, ticket: Ticket, now: datetime) -> list[SlaClock]:
    """A new ticket: its first-response and resolution clocks start under the policy that matches it."""
    policy = await select_policy(session=session, ticket=ticket)
    if policy is None:
        return []
    calendar_id = await _calendar_id_for(session=session, ticket=ticket, policy=policy)
    started = []
    for kind in ("first_response", "resolution"):
        clock = await _start(session=session, ticket=ticket, policy=policy, kind=kind, now=now, calendar_id=calendar_id)
        if clock is not None:
            started.append(clock)
    await session.flush()
    _mirror_due(ticket, started)
    return started


async def agent_replied(*, session: AsyncSession, ticket: Ticket, now: datetime) -> None:
    """An agent's reply the customer sees: it satisfies first response, stops the running next-response clock and
    starts a new one; the resolution clock is not touched."""
    clocks = await active_clocks(session=session, ticket_id=ticket.id)
    for clock in clocks:
        if clock.kind in ("first_response", "next_response"):
            await _stop_with_calendar(session=session, clock=clock, now=now)
    if ticket.status in CLOSED_STATUSES:
        await session.flush()
        return
    policy = await select_policy(session=session, ticket=ticket)
    if policy is not None:
        calendar_id = await _calendar_id_for(session=session, ticket=ticket, policy=policy)
        await _start(
            session=session, ticket=ticket, policy=policy, kind="next_response", now=now, calendar_id=calendar_id
        )
    await session.flush()


async def _stop_with_calendar(
    *, session: AsyncSession, clock: SlaClock, now: datetime, cancelled: bool = False
) -> None:
    calendar = await load_calendar(session=session, calendar_id=clock.calendar_id)
    _stop(clock, calendar, now, cancelled=cancelled)


async def status_changed(*, session: AsyncSession, ticket: Ticket, old: str, now: datetime) -> None:
    """Resolving stops the resolution clock (met or breached) and ends the others; reopening starts a new resolution
    clock; a status the policy pauses on pauses every running clock, leaving it resumes them."""
    new = ticket.status
    clocks = await active_clocks(session=session, ticket_id=ticket.id)
    if new in CLOSED_STATUSES:
        for clock in clocks:
            await _stop_with_calendar(session=session, clock=clock, now=now, cancelled=clock.kind != "resolution")
    elif old in CLOSED_STATUSES:
        policy = await select_policy(session=session, ticket=ticket)
        if policy is not None:
            calendar_id = await _calendar_id_for(session=session, ticket=ticket, policy=policy)
            reopened = await _start(
                session=session, ticket=ticket, policy=policy, kind="resolution", now=now, calendar_id=calendar_id
            )
            clocks = [reopened] if reopened is not None else []
    else:
        policies = {p.id: p for p in await session.scalars(select(SlaPolicy))}
        for clock in clocks:
            policy = policies.get(clock.policy_id or "")
            paused_on = policy.paused_statuses if policy is not None else DEFAULT_PAUSED_STATUSES
            calendar = await load_calendar(session=session, calendar_id=clock.calendar_id)
            if new in paused_on and clock.running_since is not None:
                _pause(clock, calendar, now)
            elif new not in paused_on and clock.running_since is None:
                _resume(clock, calendar, now)
    await session.flush()
    _mirror_due(ticket, clocks)


async def ticket_merged_away(*, session: AsyncSession, ticket: Ticket, now: datetime) -> None:
    """A duplicate merged into another ticket: its clocks are cancelled (the survivor's clocks count), not breached."""
    clocks = await active_clocks(session=session, ticket_id=ticket.id)
    for clock in clocks:
        await _stop_with_calendar(session=session, clock=clock, now=now, cancelled=True)
    await session.flush()
    _mirror_due(ticket, clocks)


async def recompute_ticket(
    *, session: AsyncSession, ticket: Ticket, now: datetime, policies: Sequence[SlaPolicy] | None = None
) -> None:
    """Bring a ticket's active clocks in line with the policy that matches it now: new targets and due times, clocks
    of a target no longer set are cancelled, and warnings, breaches and their escalations that no longer hold are
    cleared (so they can fire again when they do)."""
    policy = await select_policy(session=session, ticket=ticket, policies=policies)
    clocks = await active_clocks(session=session, ticket_id=ticket.id)
    if policy is None:
        for clock in clocks:
            await _stop_with_calendar(session=session, clock=clock, now=now, cancelled=True)
        await session.flush()
        _mirror_due(ticket, clocks)
        return
    calendar_id = await _calendar_id_for(session=session, ticket=ticket, policy=policy)
    calendar = await load_calendar(session=session, calendar_id=calendar_id)
    for clock in clocks:
        target = _target(policy, clock.kind)
        if target is None:
            await _stop_with_calendar(session=session, clock=clock, now=now, cancelled=True)
            continue
        old_calendar = await load_calendar(session=session, calendar_id=clock.calendar_id)
        clock.used_minutes = used_minutes_now(clock, old_calendar, now)
        clock.policy_id, clock.calendar_id = policy.id, calendar_id
        clock.target_minutes, clock.warning_percent = float(target), policy.warning_percent
        paused = ticket.status in (policy.paused_statuses or [])
        clock.running_since = None if paused else now
        clock.status = "paused" if paused else "running"
        if paused:
            clock.due_at = clock.warn_at = None
        else:
            _schedule(clock, calendar)
        cleared = []
        if clock.warned_at is not None and clock.used_minutes < target * policy.warning_percent / 100:
            clock.warned_at = None
            cleared.append("warning")
        if clock.breached_at is not None and clock.used_minutes < target:
            clock.breached_at = None
            cleared.append("breach")
        if cleared:
            await session.execute(
                delete(SlaEscalation).where(SlaEscalation.clock_id == clock.id, SlaEscalation.trigger.in_(cleared))
            )
        _set_next_check(clock)
    kinds = {c.kind for c in clocks if c.status != "cancelled"}
    if ticket.status not in CLOSED_STATUSES:
        ever = set(await session.scalars(select(SlaClock.kind).where(SlaClock.ticket_id == ticket.id)))
        if "resolution" not in kinds:
            await _start(
                session=session, ticket=ticket, policy=policy, kind="resolution", now=now, calendar_id=calendar_id
            )
        if "first_response" not in ever and ticket.first_response_at is None:
            await _start(
                session=session, ticket=ticket, policy=policy, kind="first_response", now=now, calendar_id=calendar_id
            )
    await session.flush()
    _mirror_due(ticket, await active_clocks(session=session, ticket_id=ticket.id))


async def recompute_open_clocks(*, session: AsyncSession, now: datetime | None = None) -> int:
    """Recompute every open ticket's clocks (after a policy or calendar change); returns how many were looked at."""
    when = now or utcnow()
    policies = list(await session.scalars(select(SlaPolicy).where(SlaPolicy.is_active.is_(True))))
    seen = 0
    after = ""
    while True:
        batch = list(
            await session.scalars(
                select(Ticket)
                .where(Ticket.status.in_(OPEN_STATUSES), Ticket.id > after)
                .order_by(Ticket.id)
                .limit(RECOMPUTE_BATCH)
            )
        )
        if not batch:
            return seen
        for ticket in batch:
            await recompute_ticket(session=session, ticket=ticket, now=when, policies=policies)
        seen += len(batch)
        after = batch[-1].id
