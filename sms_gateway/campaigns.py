"""The campaign dispatcher: claims due recipients of running campaigns (row locks, SKIP LOCKED on PostgreSQL) and,
in the same transaction, writes each one's message into the outbox and marks the recipient `queued` — so a crash
hands a recipient to the outbox once or not at all; the outbox does the sending (and its own crash settling)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.customers.models import Customer
from crm_core.db import utcnow
from crm_core.errors import ValidationFailed
from crm_core.sms.campaigns import next_allowed, quiet_begins, recipient_zone
from crm_core.sms.models import SmsCampaign, SmsCampaignRecipient, SmsMessage
from crm_core.sms.senders import country_defaults, number_country, pick_sender
from crm_core.sms.service import opted_out_numbers, queue_outbound
from crm_core.sms.templates import customer_fields, render

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
        async with self.sessions() as session, session.begin():
            query = (
                select(SmsCampaignRecipient, SmsCampaign, Customer)
                .join(SmsCampaign, SmsCampaign.id == SmsCampaignRecipient.campaign_id)
                .outerjoin(Customer, Customer.id == SmsCampaignRecipient.customer_id)
                .where(
                    SmsCampaign.status == "running",
                    SmsCampaignRecipient.status == "pending",
                    SmsCampaignRecipient.due_at <= now,
                )
                .order_by(SmsCampaignRecipient.due_at, SmsCampaignRecipient.id)
                .limit(self.batch)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(of=SmsCampaignRecipient, skip_locked=True)
            rows = list(await session.execute(query))
            queued = 0
            opted_out = await opted_out_numbers(session=session, numbers=[r.number for r, _c, _u in rows])
            defaults = await country_defaults(session=session) if rows else {}
            for recipient, campaign, customer in rows:
                zone = recipient_zone(recipient.number, customer.timezone if customer else None)
                later = next_allowed(now, zone, campaign.quiet_start_hour, campaign.quiet_end_hour)
                if later is not None:
                    recipient.due_at = later
                    continue
                if recipient.number in opted_out or (customer and customer.sms_opt_out):
                    recipient.status, recipient.reason = "opted_out", "The number opted out of SMS."
                    continue
                sender = pick_sender(
                    recipient.number, sender=campaign.sender, pool=campaign.sender_pool or [], defaults=defaults
                )
                if sender is None:
                    recipient.status = "failed"
                    recipient.reason = f"No default sender for {number_country(recipient.number) or 'this number'}."
                    continue
                values = customer_fields(customer.name, customer.custom_fields) if customer else {}
                for key, value in (recipient.merge_values or {}).items():
                    if isinstance(value, str) and value.strip():
                        values.setdefault(key, value)
                try:
                    rendered = render(campaign.template, values)
                except ValidationFailed as exc:  # one recipient's missing field never stops the campaign
                    recipient.status, recipient.reason = "failed", exc.message[:255]
                    continue
                message = queue_outbound(
                    session,
                    to=recipient.number,
                    sender=sender,
                    body=rendered.body,
                    customer_id=recipient.customer_id,
                    expires_at=quiet_begins(now, zone, campaign.quiet_start_hour, campaign.quiet_end_hour),
                )
                recipient.status, recipient.message_id = "queued", message.id
                queued += 1
            await self._finish(session)
        if queued and self.on_queued is not None:
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
                    await asyncio.sleep(0)  # let the outbox's sends run between batches
            except Exception:
                log.exception("the campaign dispatcher failed; trying again")
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), self.every_s)
            except TimeoutError:
                pass

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sms-campaigns")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
