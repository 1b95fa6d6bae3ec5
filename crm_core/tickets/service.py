"""Tickets: create (numbered), change status/priority/assignee, list a customer's open ones, link to calls/SMS."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.calls.models import CallLog
from crm_core.calls.service import check_call_access
from crm_core.customers.models import Customer
from crm_core.db import utcnow
from crm_core.errors import NotFound, ValidationFailed
from crm_core.inputs import LONG_TEXT, check_text, column_length
from crm_core.tickets.errors import InvalidTicketChange
from crm_core.tickets.models import Ticket, TicketLink
from crm_core.users.models import Role, User
from crm_core.users.service import Actor, require_role

STATUSES = ("open", "pending", "resolved", "closed")
OPEN_STATUSES = ("open", "pending")
PRIORITIES = ("low", "normal", "high", "urgent")
STAFF = (Role.AGENT, Role.SUPERVISOR)
NUMBER_ATTEMPTS = 5
TICKET_NUMBER_LOCK = 0x7469636B  # 'tick'
SUBJECT_LENGTH = column_length(Ticket.subject)
CATEGORY_LENGTH = column_length(Ticket.category)
ID_LENGTH = column_length(Ticket.id)


def _snapshot(ticket: Ticket) -> dict[str, Any]:
    return {
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "category": ticket.category,
        "assignee_id": ticket.assignee_id,
        "customer_id": ticket.customer_id,
    }


def check_ticket_fields(*, subject: str | None = None, status: str | None = None, priority: str | None = None) -> None:
    if subject is not None:
        check_text(subject, field="subject", max_length=SUBJECT_LENGTH, required=True)
    if status is not None and status not in STATUSES:
        raise InvalidTicketChange(f"Status must be one of {', '.join(STATUSES)}.", field="status", status=status)
    if priority is not None and priority not in PRIORITIES:
        raise InvalidTicketChange(
            f"Priority must be one of {', '.join(PRIORITIES)}.", field="priority", priority=priority
        )


async def check_ticket_people(
    *, session: AsyncSession, customer_id: str | None = None, assignee_id: str | None = None
) -> None:
    """The customer and the assignee a ticket names exist: a missing one is the caller's mistake, said as such
    (not a foreign-key failure that the numbering retry would report as "Could not number the ticket")."""
    if customer_id is not None:
        check_text(customer_id, field="customer_id", max_length=ID_LENGTH)
        if await session.get(Customer, customer_id) is None:
            raise NotFound(f"There is no customer {customer_id}.", field="customer_id", customer_id=customer_id)
    if assignee_id:
        check_text(assignee_id, field="assignee_id", max_length=ID_LENGTH)
        if await session.get(User, assignee_id) is None:
            raise NotFound(f"There is no user {assignee_id}.", field="assignee_id", assignee_id=assignee_id)


async def _check_call_of_ticket(*, session: AsyncSession, actor: Actor, call_id: str) -> None:
    """A ticket tied to a call only by someone who may act on that call (the calls domain's one rule)."""
    call = await session.get(CallLog, call_id)
    if call is None:
        raise NotFound("No such call.", call_id=call_id)
    await check_call_access(session=session, actor=actor, call=call)


async def create_ticket(
    *,
    session: AsyncSession,
    actor: Actor,
    subject: str,
    description: str = "",
    customer_id: str | None = None,
    priority: str = "normal",
    category: str | None = None,
    assignee_id: str | None = None,
    call_id: str | None = None,
    sms_id: str | None = None,
    due_at: datetime | None = None,
) -> Ticket:
    require_role(actor, *STAFF)
    check_ticket_fields(subject=subject, priority=priority)
    description = check_text(description, field="description", max_length=LONG_TEXT, multiline=True)
    if category is not None:
        category = check_text(category, field="category", max_length=CATEGORY_LENGTH) or None
    await check_ticket_people(session=session, customer_id=customer_id, assignee_id=assignee_id)
    if call_id:
        await _check_call_of_ticket(session=session, actor=actor, call_id=call_id)
    # The next number is max+1. On PostgreSQL a transaction-scoped advisory lock makes concurrent creators take
    # turns (the lock is held until commit, so the next one sees the committed max); SQLite serialises writers
    # itself, and the savepoint retry covers a collision on the unique index anyway.
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": TICKET_NUMBER_LOCK})
    for _attempt in range(NUMBER_ATTEMPTS):
        number = int(await session.scalar(select(func.coalesce(func.max(Ticket.number), 1000))) or 1000) + 1
        ticket = Ticket(
            number=number,
            subject=subject.strip(),
            description=description,
            customer_id=customer_id,
            priority=priority,
            category=category,
            assignee_id=assignee_id,
            created_by=actor.user_id,
            due_at=due_at,
        )
        try:
            async with session.begin_nested():
                session.add(ticket)
                await session.flush()
        except IntegrityError:
            continue
        break
    else:
        raise ValidationFailed("Could not number the ticket; try again.")
    if call_id or sms_id:
        session.add(TicketLink(ticket_id=ticket.id, call_id=call_id, sms_id=sms_id))
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="ticket",
        entity_id=ticket.id,
        after=_snapshot(ticket),
    )
    return ticket


async def get_ticket(*, session: AsyncSession, actor: Actor, ticket_id: str) -> Ticket:
    require_role(actor, *STAFF)
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFound("No such ticket.", ticket_id=ticket_id)
    return ticket


async def find_ticket_by_number(*, session: AsyncSession, number: int) -> Ticket | None:
    """For self-service (IVR): the caller reads out the number; no actor, the flow checks the caller."""
    return await session.scalar(select(Ticket).where(Ticket.number == number))


async def update_ticket(
    *,
    session: AsyncSession,
    actor: Actor,
    ticket_id: str,
    status: str | None = None,
    priority: str | None = None,
    assignee_id: str | None = None,
    subject: str | None = None,
    now: datetime | None = None,
) -> Ticket:
    check_ticket_fields(subject=subject, status=status, priority=priority)
    ticket = await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    await check_ticket_people(session=session, assignee_id=assignee_id)
    before = _snapshot(ticket)
    when = now or utcnow()
    if status is not None and status != ticket.status:
        ticket.status = status
        if status in ("resolved", "closed") and ticket.resolved_at is None:
            ticket.resolved_at = when
        if status in OPEN_STATUSES:
            ticket.resolved_at = None
    if priority is not None:
        ticket.priority = priority
    if assignee_id is not None:
        ticket.assignee_id = assignee_id or None
    if subject is not None:
        ticket.subject = subject.strip()
    if ticket.first_response_at is None and actor.user_id and actor.user_id != ticket.created_by:
        ticket.first_response_at = when
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="ticket",
        entity_id=ticket.id,
        before=before,
        after=_snapshot(ticket),
    )
    return ticket


async def open_tickets_of(*, session: AsyncSession, customer_id: str, limit: int = 20) -> list[Ticket]:
    query = (
        select(Ticket)
        .where(Ticket.customer_id == customer_id, Ticket.status.in_(OPEN_STATUSES))
        .order_by(Ticket.created_at.desc())
        .limit(limit)
    )
    return list(await session.scalars(query))


async def link_ticket(
    *, session: AsyncSession, actor: Actor, ticket_id: str, call_id: str | None = None, sms_id: str | None = None
) -> TicketLink:
    require_role(actor, *STAFF)
    if not call_id and not sms_id:
        raise ValidationFailed("Link a ticket to a call or an SMS.")
    await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    if call_id:
        await _check_call_of_ticket(session=session, actor=actor, call_id=call_id)
    link = TicketLink(ticket_id=ticket_id, call_id=call_id, sms_id=sms_id)
    session.add(link)
    await session.flush()
    return link
