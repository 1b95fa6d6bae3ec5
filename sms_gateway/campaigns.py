"""The campaign dispatcher: claims due recipients of running campaigns (row locks, SKIP LOCKED on PostgreSQL) and,
in the same transaction, writes each one's message into the outbox and marks the recipient `queued` — so a crash
hands a recipient to the outbox once or not at all; the outbox does the sending (and its own crash settling)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.customers.models import Customer
from crm_core.db import new_id, utcnow
from crm_core.errors import ValidationFailed
from crm_core.sms.campaigns import next_allowed, quiet_begins, recipient_zone
from crm_core.sms.models import SmsCampaign, SmsCampaignRecipient, SmsMessage
from crm_core.sms.senders import country_defaults, number_country, pick_sender
from crm_core.sms.service import opted_out_numbers
from crm_core.sms.templates import customer_fields, render
from crm_core.tasks import cancel_and_wait, wait_for_wake

log = logging.getLogger(__name__)


class CampaignDispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        batch: int = 200,
        every_s: float = 1.0,
        on_queued: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        max_backlog: int = 5000,
    ) -> None:
        self.sessions = sessions
        self.batch = batch
        self.every_s = every_s
        self.on_queued = on_queued  # wakes the outbox
        self.clock = clock
        # hand over no more while this many messages already wait in the outbox: a million-recipient campaign is
        # fed to the outbox as it sends, not written into it at once
        self.max_backlog = max_backlog
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """Hand one batch of due recipients to the outbox; the number handled."""
        now = self.clock()
        async with self.sessions() as session:
            waiting = select(SmsMessage.id).where(SmsMessage.status == "queued").limit(self.max_backlog).subquery()
            backlog = int(await session.scalar(select(func.count()).select_from(waiting)) or 0)
        if backlog >= self.max_backlog:
            return 0
        recipients, campaigns, customers = (
            SmsCampaignRecipient.__table__,
            SmsCampaign.__table__,
            Customer.__table__,
        )
        async with self.sessions() as session, session.begin():
            query = (
                select(
                    recipients.c.id,
                    recipients.c.number,
                    recipients.c.customer_id,
                    recipients.c.merge_values,
                    campaigns.c.template,
                    campaigns.c.sender,
                    campaigns.c.sender_pool,
                    campaigns.c.quiet_start_hour,
                    campaigns.c.quiet_end_hour,
                    customers.c.name,
                    customers.c.custom_fields,
                    customers.c.timezone,
                    customers.c.sms_opt_out,
                )
                .join(campaigns, campaigns.c.id == recipients.c.campaign_id)
                .outerjoin(customers, customers.c.id == recipients.c.customer_id)
                .where(
                    campaigns.c.status == "running",
                    recipients.c.status == "pending",
                    recipients.c.due_at <= now,
                )
                .order_by(recipients.c.due_at)  # the (status, due_at) index yields them in order: no sort of all
                .limit(self.batch)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(of=recipients, skip_locked=True)
            rows = list(await session.execute(query))
            opted_out = await opted_out_numbers(session=session, numbers=[r.number for r in rows])
            defaults = await country_defaults(session=session) if rows else {}
            later: list[dict[str, Any]] = []  # recipients in their quiet hours: due when those end
            settled: list[dict[str, Any]] = []  # recipients opted out or failed, with why
            handed: list[dict[str, Any]] = []  # recipients handed to the outbox, with their message
            messages: list[dict[str, Any]] = []
            stamp = utcnow()
            for row in rows:
                zone = recipient_zone(row.number, row.timezone)
                allowed_at = next_allowed(now, zone, row.quiet_start_hour, row.quiet_end_hour)
                if allowed_at is not None:
                    later.append({"ref": row.id, "due": allowed_at})
                    continue
                if row.number in opted_out or row.sms_opt_out:
                    settled.append({"ref": row.id, "state": "opted_out", "why": "The number opted out of SMS."})
                    continue
                sender = pick_sender(row.number, sender=row.sender, pool=row.sender_pool or [], defaults=defaults)
                if sender is None:
                    why = f"No default sender for {number_country(row.number) or 'this number'}."
                    settled.append({"ref": row.id, "state": "failed", "why": why})
                    continue
                values = customer_fields(row.name, row.custom_fields) if row.name is not None else {}
                for key, value in (row.merge_values or {}).items():
                    if isinstance(value, str) and value.strip():
                        values.setdefault(key, value)
                try:
                    rendered = render(row.template, values)
                except ValidationFailed as exc:  # one recipient's missing field never stops the campaign
                    settled.append({"ref": row.id, "state": "failed", "why": exc.message[:255]})
                    continue
                message_id = new_id()
                messages.append(
                    {
                        "id": message_id,
                        "direction": "outbound",
                        "from_number": sender,
                        "to_number": row.number,
                        "body": rendered.body,
                        "status": "queued",
                        "encoding": rendered.shape.encoding,
                        "segments": rendered.shape.segments,
                        "customer_id": row.customer_id,
                        "attempts": 0,
                        "due_at": stamp,
                        "expires_at": quiet_begins(now, zone, row.quiet_start_hour, row.quiet_end_hour),
                        "created_at": stamp,
                    }
                )
                handed.append({"ref": row.id, "message": message_id})
            # the messages and their recipients' marks in one transaction: a crash does both or neither
            if messages:
                await session.execute(insert(SmsMessage.__table__), messages)
            mark = update(recipients).where(recipients.c.id == bindparam("ref"))
            if handed:
                await session.execute(mark.values(status="queued", message_id=bindparam("message")), handed)
            if settled:
                await session.execute(mark.values(status=bindparam("state"), reason=bindparam("why")), settled)
            if later:
                await session.execute(mark.values(due_at=bindparam("due")), later)
            await self._finish(session)
        if handed and self.on_queued is not None:
            self.on_queued()
        return len(rows)

    async def _finish(self, session: AsyncSession) -> None:
        """A running campaign with no pending recipient left is done (its messages may still be on their way)."""
        pending = exists().where(
            SmsCampaignRecipient.campaign_id == SmsCampaign.id, SmsCampaignRecipient.status == "pending"
        )
        await session.execute(
            update(SmsCampaign)
            .where(SmsCampaign.status == "running", ~pending)
            .values(status="done", finished_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def _loop(self) -> None:
        while True:
            try:
                while await self.run_once() >= self.batch:
                    pass
            except Exception:
                log.exception("the campaign dispatcher failed; trying again")
            await wait_for_wake(self.wake, self.every_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sms-campaigns")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
