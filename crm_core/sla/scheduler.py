"""The SLA scheduler: one loop finds clocks whose warning or due time has come (one indexed query, no timer per
ticket), marks them, runs the escalation rules once per clock, and publishes the events after commit. Several
processes may run it: rows are claimed with FOR UPDATE SKIP LOCKED on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import String, Table, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.audit.service import record_audit
from crm_core.bus import EventBus
from crm_core.db import record_event, unit_of_work, utcnow
from crm_core.sla.events import SlaClockBreached, SlaClockWarned, TicketEscalated
from crm_core.sla.models import SlaClock, SlaEscalation, SlaEscalationRule
from crm_core.tasks import cancel_and_wait
from crm_core.tickets.models import PRIORITIES, Ticket
from crm_core.tickets.service import announce
from crm_core.users.models import User
from crm_core.users.service import SYSTEM

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DueClock:
    """The columns of a due clock the scheduler reads, and what it changes."""

    id: str
    ticket_id: str
    kind: str
    policy_id: str | None
    warn_at: datetime | None
    due_at: datetime | None
    warned_at: datetime | None
    breached_at: datetime | None
    running_since: datetime | None
    stopped_at: datetime | None

    def crossed(self, trigger: str, now: datetime) -> bool:
        if self.stopped_at is not None or self.running_since is None:
            return False
        if trigger == "warning":
            return self.warned_at is None and self.warn_at is not None and self.warn_at <= now
        return self.breached_at is None and self.due_at is not None and self.due_at <= now


@dataclass(slots=True)
class TicketFacts:
    id: str
    number: int
    subject: str
    assignee_id: str | None


def _raised(priority: str) -> str:
    index = PRIORITIES.index(priority) if priority in PRIORITIES else 0
    return PRIORITIES[min(index + 1, len(PRIORITIES) - 1)]


class SlaScheduler:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: EventBus | None,
        *,
        every_s: float = 5.0,
        batch_size: int = 10_000,  # fewer round trips a pass; 10,000 plain rows are a few MB
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.bus = bus
        self.every_s = every_s
        self.batch_size = batch_size
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """One pass: handle everything due now, batch by batch; returns how many clocks were handled."""
        now = self.clock()
        handled = 0
        async with self.sessions() as session:  # the rules once a pass, not once a batch
            rules = list(await session.scalars(select(SlaEscalationRule).where(SlaEscalationRule.is_active.is_(True))))
            for rule in rules:
                session.expunge(rule)
        while True:
            count = await self._batch(now, rules)
            handled += count
            if count < self.batch_size:
                return handled

    async def _batch(self, now: datetime, rules: list[SlaEscalationRule]) -> int:
        # Plain column rows, one claiming query that brings each clock's ticket and assignee along, and one
        # set-based UPDATE per kind of change (ids bound as one array on PostgreSQL, not a thousand parameters):
        # a pass over thousands of due clocks must not build and flush an ORM object per clock. Tickets become ORM
        # objects only when a rule changes them.
        async with unit_of_work(self.sessions, self.bus) as session:
            postgres = session.get_bind().dialect.name == "postgresql"
            query = (
                select(
                    SlaClock.id,
                    SlaClock.ticket_id,
                    SlaClock.kind,
                    SlaClock.policy_id,
                    SlaClock.warn_at,
                    SlaClock.due_at,
                    SlaClock.warned_at,
                    SlaClock.breached_at,
                    SlaClock.running_since,
                    SlaClock.stopped_at,
                    Ticket.number,
                    Ticket.subject,
                    Ticket.assignee_id,
                    User.extension,
                )
                .outerjoin(Ticket, Ticket.id == SlaClock.ticket_id)
                .outerjoin(User, User.id == Ticket.assignee_id)
                .where(SlaClock.next_check_at <= now)
                .order_by(SlaClock.next_check_at)
                .limit(self.batch_size)
            )
            if postgres:
                query = query.with_for_update(skip_locked=True, of=SlaClock)
            clocks: list[DueClock] = []
            tickets: dict[str, TicketFacts] = {}
            extensions: dict[str, str | None] = {}
            for row in await session.execute(query):
                clocks.append(DueClock(*row[:10]))
                if row.number is not None:
                    tickets[row.ticket_id] = TicketFacts(row.ticket_id, row.number, row.subject, row.assignee_id)
                    if row.assignee_id:
                        extensions[row.assignee_id] = row.extension
            if not clocks:
                return 0
            acted: set[tuple[str, str]] = set()
            if rules:
                rows = await session.execute(
                    select(SlaEscalation.rule_id, SlaEscalation.clock_id).where(
                        SlaEscalation.clock_id.in_([c.id for c in clocks])
                    )
                )
                acted = {(rule_id, clock_id) for rule_id, clock_id in rows}
                targets = {r.target_user_id for r in rules if r.target_user_id} - set(extensions)
                if targets:
                    users = await session.execute(select(User.id, User.extension).where(User.id.in_(targets)))
                    extensions.update({user_id: extension for user_id, extension in users})
            # clocks grouped by what changes: (warned now, breached now, next look at) -> ids
            changes: dict[tuple[bool, bool, str], list[str]] = defaultdict(list)
            for clock in clocks:
                facts = tickets.get(clock.ticket_id)
                if facts is None:
                    changes[(False, False, "none")].append(clock.id)
                    continue
                was_warned, was_breached = clock.warned_at is not None, clock.breached_at is not None
                for trigger in ("warning", "breach"):
                    if not clock.crossed(trigger, now):
                        continue
                    if trigger == "warning":
                        clock.warned_at = now
                    else:
                        clock.breached_at = now
                    event_type = SlaClockWarned if trigger == "warning" else SlaClockBreached
                    record_event(
                        session,
                        event_type(
                            ticket_id=facts.id,
                            ticket_number=facts.number,
                            subject=facts.subject,
                            clock_id=clock.id,
                            kind=clock.kind,
                            due_at=clock.due_at,
                            assignee_extension=extensions.get(facts.assignee_id or ""),
                            at=now,
                        ),
                    )
                    for rule in rules:
                        if rule.trigger != trigger or (rule.id, clock.id) in acted:
                            continue
                        if rule.policy_id not in (None, clock.policy_id) or rule.clock_kind not in (None, clock.kind):
                            continue
                        await self._escalate(session, rule, clock, facts, extensions, now)
                        acted.add((rule.id, clock.id))
                look = "warn_at" if clock.warned_at is None else "due_at" if clock.breached_at is None else "none"
                warned_now = clock.warned_at is not None and not was_warned
                breached_now = clock.breached_at is not None and not was_breached
                changes[(warned_now, breached_now, look)].append(clock.id)
            # one set-based UPDATE per group (at most a handful a batch), not one statement per clock
            table = cast(Table, SlaClock.__table__)
            for (warned_now, breached_now, look), ids in changes.items():
                values: dict[str, Any] = {"next_check_at": table.c[look] if look != "none" else None}
                if warned_now:
                    values["warned_at"] = now
                if breached_now:
                    values["breached_at"] = now
                if postgres:
                    which = table.c.id == any_(bindparam("due_ids", ids, type_=ARRAY(String)))
                else:
                    which = table.c.id.in_(ids)
                await session.execute(update(table).where(which).values(**values))
            return len(clocks)

    async def _escalate(
        self,
        session: AsyncSession,
        rule: SlaEscalationRule,
        clock: DueClock,
        facts: TicketFacts,
        extensions: dict[str, str | None],
        now: datetime,
    ) -> None:
        ticket = await session.get(Ticket, facts.id)
        if ticket is None:
            return
        before = {"assignee_id": ticket.assignee_id, "priority": ticket.priority}
        if rule.action == "reassign" and rule.target_user_id:
            ticket.assignee_id = rule.target_user_id
            facts.assignee_id = rule.target_user_id
        elif rule.action == "raise_priority":
            ticket.priority = _raised(ticket.priority)
        session.add(SlaEscalation(rule_id=rule.id, clock_id=clock.id, ticket_id=ticket.id, trigger=rule.trigger))
        await record_audit(
            session=session,
            actor=None,
            action="update",
            entity_type="ticket",
            entity_id=ticket.id,
            before=before,
            after={
                "assignee_id": ticket.assignee_id,
                "priority": ticket.priority,
                "escalation": {"rule": rule.name, "action": rule.action, "trigger": rule.trigger, "clock": clock.kind},
            },
        )
        await session.flush()
        if rule.action in ("reassign", "raise_priority"):  # the ticket's people see the change live
            changed = "assignee_id" if rule.action == "reassign" else "priority"
            await announce(session=session, ticket=ticket, change=changed, actor=SYSTEM, also=[before["assignee_id"]])
        record_event(
            session,
            TicketEscalated(
                ticket_id=ticket.id,
                ticket_number=ticket.number,
                rule_id=rule.id,
                action=rule.action,
                trigger=rule.trigger,
                clock_kind=clock.kind,
                notify_extension=extensions.get(rule.target_user_id or "") if rule.action == "notify" else None,
                at=now,
            ),
        )

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # a database hiccup must not stop the SLA clocks
                log.exception("the SLA scheduler pass failed; trying again later")
            await asyncio.sleep(self.every_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sla-scheduler")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
