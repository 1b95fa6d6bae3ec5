"""The SLA scheduler: one loop finds clocks whose warning or due time has come (one indexed query, no timer per
ticket), marks them, runs the escalation rules once per clock, and publishes the events after commit. Several
processes may run it: rows are claimed with FOR UPDATE SKIP LOCKED on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.audit.service import record_audit
from crm_core.bus import EventBus
from crm_core.db import record_event, unit_of_work, utcnow
from crm_core.sla.events import SlaClockBreached, SlaClockWarned, TicketEscalated
from crm_core.sla.models import SlaClock, SlaEscalation, SlaEscalationRule
from crm_core.tickets.models import PRIORITIES, Ticket
from crm_core.users.models import User

log = logging.getLogger(__name__)


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
        batch_size: int = 1000,
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
        while True:
            count = await self._batch(now)
            handled += count
            if count < self.batch_size:
                return handled

    async def _batch(self, now: datetime) -> int:
        async with unit_of_work(self.sessions, self.bus) as session:
            query = (
                select(SlaClock)
                .where(SlaClock.next_check_at <= now)
                .order_by(SlaClock.next_check_at)
                .limit(self.batch_size)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            clocks = list(await session.scalars(query))
            if not clocks:
                return 0
            tickets = {
                t.id: t
                for t in await session.scalars(select(Ticket).where(Ticket.id.in_({c.ticket_id for c in clocks})))
            }
            rules = list(await session.scalars(select(SlaEscalationRule).where(SlaEscalationRule.is_active.is_(True))))
            acted: set[tuple[str, str]] = set()
            if rules:
                rows = await session.execute(
                    select(SlaEscalation.rule_id, SlaEscalation.clock_id).where(
                        SlaEscalation.clock_id.in_([c.id for c in clocks])
                    )
                )
                acted = {(rule_id, clock_id) for rule_id, clock_id in rows}
            wanted_users = {t.assignee_id for t in tickets.values() if t.assignee_id}
            wanted_users |= {r.target_user_id for r in rules if r.target_user_id}
            extensions: dict[str, str | None] = {}
            if wanted_users:
                found = await session.execute(select(User.id, User.extension).where(User.id.in_(wanted_users)))
                extensions = {user_id: extension for user_id, extension in found}
            for clock in clocks:
                ticket = tickets.get(clock.ticket_id)
                if ticket is None:
                    clock.next_check_at = None
                    continue
                for trigger in ("warning", "breach"):
                    if not self._crossed(clock, trigger, now):
                        continue
                    if trigger == "warning":
                        clock.warned_at = now
                    else:
                        clock.breached_at = now
                    event_type = SlaClockWarned if trigger == "warning" else SlaClockBreached
                    record_event(
                        session,
                        event_type(
                            ticket_id=ticket.id,
                            ticket_number=ticket.number,
                            subject=ticket.subject,
                            clock_id=clock.id,
                            kind=clock.kind,
                            due_at=clock.due_at,
                            assignee_extension=extensions.get(ticket.assignee_id or ""),
                            at=now,
                        ),
                    )
                    for rule in rules:
                        if rule.trigger != trigger or (rule.id, clock.id) in acted:
                            continue
                        if rule.policy_id not in (None, clock.policy_id) or rule.clock_kind not in (None, clock.kind):
                            continue
                        await self._escalate(session, rule, clock, ticket, extensions, now)
                        acted.add((rule.id, clock.id))
                if clock.warned_at is None:
                    clock.next_check_at = clock.warn_at
                elif clock.breached_at is None:
                    clock.next_check_at = clock.due_at
                else:
                    clock.next_check_at = None
            return len(clocks)

    @staticmethod
    def _crossed(clock: SlaClock, trigger: str, now: datetime) -> bool:
        if clock.stopped_at is not None or clock.running_since is None:
            return False
        if trigger == "warning":
            return clock.warned_at is None and clock.warn_at is not None and clock.warn_at <= now
        return clock.breached_at is None and clock.due_at is not None and clock.due_at <= now

    async def _escalate(
        self,
        session: AsyncSession,
        rule: SlaEscalationRule,
        clock: SlaClock,
        ticket: Ticket,
        extensions: dict[str, str | None],
        now: datetime,
    ) -> None:
        before = {"assignee_id": ticket.assignee_id, "priority": ticket.priority}
        if rule.action == "reassign" and rule.target_user_id:
            ticket.assignee_id = rule.target_user_id
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
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
