"""Satisfaction (CSAT) after a ticket is resolved: a row per resolution written with the resolution, one dispatcher
loop that sends the request by SMS through the outbox (or says why it could not), a customer's SMS reply 1–5 or the
IVR survey of a call linked to the ticket stored as the score — once per resolution, whichever comes first."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.audit.service import record_audit
from crm_core.calls.models import CallLog
from crm_core.calls.service import record_survey
from crm_core.customers.models import CustomerPhone
from crm_core.db import utcnow
from crm_core.sms.service import is_opted_out, queue_outbound
from crm_core.tasks import cancel_and_wait
from crm_core.tickets.csat_models import ANSWERABLE, TicketCsat
from crm_core.tickets.models import CLOSED_STATUSES, Ticket, TicketLink

log = logging.getLogger(__name__)
REPLY_WINDOW = timedelta(days=7)  # a digit texted later than this is an ordinary message
DEFAULT_TEXT = "How did we do with ticket {number}? Reply with a number from 1 (bad) to 5 (great)."
# "5", "4!", "3 stars", "2/5": the whole text is the score (anything longer is a message for an agent)
_SCORE = re.compile(r"^\s*([1-5])\s*(?:/\s*5|stars?)?\s*[.!]*\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CsatPolicy:
    """From settings: whether requests go out, from which sender, how long after resolution, in which words."""

    enabled: bool = True
    sms_sender: str | None = None
    delay: timedelta = timedelta(minutes=10)
    text: str = DEFAULT_TEXT


def parse_score(body: str) -> int | None:
    found = _SCORE.match(body or "")
    return int(found.group(1)) if found else None


async def customer_mobile(*, session: AsyncSession, customer_id: str | None) -> str | None:
    """The customer's number an SMS may go to: a phone labelled mobile (the primary first); None without one."""
    if customer_id is None:
        return None
    found = await session.scalar(
        select(CustomerPhone.e164)
        .where(CustomerPhone.customer_id == customer_id, CustomerPhone.label == "mobile")
        .order_by(CustomerPhone.is_primary.desc(), CustomerPhone.e164)
        .limit(1)
    )
    return str(found) if found else None


async def ticket_resolved(*, session: AsyncSession, ticket: Ticket, now: datetime) -> TicketCsat | None:
    """Called when a ticket becomes resolved: the request of this resolution, for the dispatcher."""
    if ticket.resolved_at is None:
        return None
    known = await session.scalar(
        select(TicketCsat).where(TicketCsat.ticket_id == ticket.id, TicketCsat.resolved_at == ticket.resolved_at)
    )
    if known is not None:
        return known
    row = TicketCsat(ticket_id=ticket.id, resolved_at=ticket.resolved_at, status="pending", requested_at=now)
    session.add(row)
    await session.flush()
    return row


async def dispatch_due(
    *, session: AsyncSession, policy: CsatPolicy, now: datetime | None = None, limit: int = 100
) -> list[TicketCsat]:
    """Send the requests whose delay has passed (claimed with SKIP LOCKED on PostgreSQL: several dispatchers never
    send one twice). Each ends sent, unsent (with the reason), off or cancelled (the ticket was reopened)."""
    when = now or utcnow()
    query = (
        select(TicketCsat)
        .where(TicketCsat.status == "pending", TicketCsat.requested_at <= when - policy.delay)
        .order_by(TicketCsat.requested_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = list(await session.scalars(query))
    for row in rows:
        ticket = await session.get(Ticket, row.ticket_id)
        if not policy.enabled:
            row.status, row.reason = "off", "CSAT requests are switched off."
            continue
        if ticket is None or ticket.status not in CLOSED_STATUSES or ticket.resolved_at != row.resolved_at:
            row.status, row.reason = "cancelled", "The ticket was reopened before the request went out."
            continue
        number = await customer_mobile(session=session, customer_id=ticket.customer_id)
        if number is None:
            row.status, row.reason = "unsent", "The customer has no mobile number."
        elif await is_opted_out(session=session, number=number):
            row.status, row.reason, row.number = "unsent", "The customer opted out of SMS.", number
        elif not policy.sms_sender:
            row.status, row.reason, row.number = "unsent", "No SMS sender is configured.", number
        else:
            message = queue_outbound(
                session,
                to=number,
                sender=policy.sms_sender,
                body=policy.text.replace("{number}", str(ticket.number)),
                customer_id=ticket.customer_id,
            )
            row.status, row.number, row.sms_id = "sent", number, message.id
    await session.flush()
    return rows


async def _answer(
    session: AsyncSession, row: TicketCsat, *, score: int, channel: str, now: datetime, call_id: str | None = None
) -> TicketCsat:
    row.status, row.score, row.channel, row.answered_at, row.call_id = "answered", score, channel, now, call_id
    await session.flush()
    await record_audit(
        session=session,
        actor=None,
        action="update",
        entity_type="ticket_csat",
        entity_id=row.id,
        after={"ticket_id": row.ticket_id, "score": score, "channel": channel},
    )
    return row


async def record_sms_reply(
    *, session: AsyncSession, number: str, body: str, now: datetime | None = None
) -> TicketCsat | None:
    """A customer's text: when it is a score and a request went to this number within the window and is still
    unanswered, the score of the newest such request; otherwise None (the text is an ordinary message)."""
    score = parse_score(body)
    if score is None:
        return None
    when = now or utcnow()
    row = await session.scalar(
        select(TicketCsat)
        .where(
            TicketCsat.number == number,
            TicketCsat.status == "sent",
            TicketCsat.requested_at >= when - REPLY_WINDOW,
        )
        .order_by(TicketCsat.requested_at.desc())
        .limit(1)
        .with_for_update()
    )
    if row is None:
        return None
    return await _answer(session, row, score=score, channel="sms", now=when)


async def record_ivr_score(
    *, session: AsyncSession, call: CallLog, score: int, now: datetime | None = None
) -> list[TicketCsat]:
    """The IVR survey of a call: the score of each resolved ticket linked to the call whose resolution has no
    score yet. A ticket still open keeps none (the score stays on the call)."""
    when = now or utcnow()
    tickets = list(
        await session.scalars(
            select(Ticket).join(TicketLink, TicketLink.ticket_id == Ticket.id).where(TicketLink.call_id == call.id)
        )
    )
    answered = []
    for ticket in tickets:
        if ticket.status not in CLOSED_STATUSES or ticket.resolved_at is None:
            continue
        row = await ticket_resolved(session=session, ticket=ticket, now=when)
        if row is not None and row.status in ANSWERABLE:
            answered.append(await _answer(session, row, score=score, channel="ivr", now=when, call_id=call.id))
    return answered


async def record_survey_on_tickets(
    *, session: AsyncSession, linkedid: str, score: int, outside_pbx: bool = False, at: datetime | None = None
) -> CallLog:
    """The IVR's survey step: the score on the call log (as before), and on the tickets linked to the call."""
    call = await record_survey(session=session, linkedid=linkedid, score=score, outside_pbx=outside_pbx, at=at)
    await session.flush()
    await record_ivr_score(session=session, call=call, score=score, now=at)
    return call


async def csat_of(*, session: AsyncSession, ticket_id: str) -> list[TicketCsat]:
    """Every resolution's CSAT of a ticket, newest first (the caller checked it may read the ticket)."""
    return list(
        await session.scalars(
            select(TicketCsat).where(TicketCsat.ticket_id == ticket_id).order_by(TicketCsat.resolved_at.desc())
        )
    )


class CsatDispatcher:
    """One loop for every pending request (an indexed query a pass), safe with several processes."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        policy: CsatPolicy,
        *,
        every_s: float = 30.0,
        on_queued: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        batch: int = 100,
    ) -> None:
        self.sessions = sessions
        self.batch = batch
        self.policy = policy
        self.every_s = every_s
        self.on_queued = on_queued
        self.clock = clock
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> list[TicketCsat]:
        try:
            async with self.sessions() as session, session.begin():
                rows = await dispatch_due(session=session, policy=self.policy, now=self.clock(), limit=self.batch)
        except IntegrityError:  # another dispatcher settled the same row first (SQLite has no SKIP LOCKED)
            return []
        if any(r.status == "sent" for r in rows) and self.on_queued is not None:
            self.on_queued()
        return rows

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # a database hiccup must not end the loop
                log.exception("sending CSAT requests failed; trying again later")
            try:
                await asyncio.wait_for(self.wake.wait(), self.every_s)
            except TimeoutError:
                pass
            self.wake.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="csat-dispatcher")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
