"""Tickets: create (numbered), change status/priority/assignee/team, the conversation (replies and internal notes),
watchers, tags, merging duplicates, the desk's list with saved views and filters, a customer's open ones, links to
calls/SMS; SLA clocks follow, and every change is audited and told to the ticket's people after commit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.calls.models import CallLog
from crm_core.calls.service import check_call_access
from crm_core.customers.models import Customer
from crm_core.db import record_event, utcnow
from crm_core.errors import NotFound, PermissionDenied, ValidationFailed
from crm_core.inputs import LONG_TEXT, check_text, column_length
from crm_core.sla import service as sla
from crm_core.sla.models import AT_RISK_CONDITION, SlaClock
from crm_core.tickets import csat
from crm_core.tickets.errors import InvalidTicketChange
from crm_core.tickets.events import TicketChanged, TicketCreated, TicketUpdated
from crm_core.tickets.models import (
    CLOSED_STATUSES,
    OPEN_CONDITION,
    OPEN_STATUSES,
    PRIORITIES,
    STATUSES,
    TAG_LENGTH,
    Ticket,
    TicketLink,
    TicketMessage,
    TicketTag,
    TicketWatcher,
)
from crm_core.users.models import Role, User
from crm_core.users.service import Actor, require_role

__all__ = ["CLOSED_STATUSES", "OPEN_STATUSES", "PRIORITIES", "STATUSES"]
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
        "team": ticket.team,
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
    team: str | None = None,
    now: datetime | None = None,
) -> Ticket:
    require_role(actor, *STAFF)
    check_ticket_fields(subject=subject, priority=priority)
    description = check_text(description, field="description", max_length=LONG_TEXT, multiline=True)
    if category is not None:
        category = check_text(category, field="category", max_length=CATEGORY_LENGTH) or None
    await check_ticket_people(session=session, customer_id=customer_id, assignee_id=assignee_id)
    when = now or utcnow()
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
            team=(team or "").strip() or None,
            created_by=actor.user_id,
            created_at=when,
            updated_at=when,
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
    await sla.ticket_opened(session=session, ticket=ticket, now=when)
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="ticket",
        entity_id=ticket.id,
        after=_snapshot(ticket),
    )
    record_event(
        session,
        TicketCreated(
            ticket_id=ticket.id,
            number=ticket.number,
            subject=ticket.subject,
            status=ticket.status,
            priority=ticket.priority,
            customer_id=ticket.customer_id,
            assignee_id=ticket.assignee_id,
            team=ticket.team,
            created_at=when,
        ),
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
    category: str | None = None,
    team: str | None = None,
    now: datetime | None = None,
) -> Ticket:
    """Change a ticket (an empty assignee_id, category or team clears it); the SLA clocks follow: a status the policy
    pauses on pauses them, resolving stops them, a new priority, category or team may choose another policy."""
    check_ticket_fields(subject=subject, status=status, priority=priority)
    ticket = await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    await check_ticket_people(session=session, assignee_id=assignee_id)
    if assignee_id:
        await _check_assignee(session=session, user_id=assignee_id)
    before = _snapshot(ticket)
    when = now or utcnow()
    old_status = ticket.status
    before_resolved = ticket.resolved_at
    if status is not None and status != ticket.status:
        ticket.status = status
        if status in CLOSED_STATUSES and ticket.resolved_at is None:
            ticket.resolved_at = when
        if status in OPEN_STATUSES:
            ticket.resolved_at = None
    if priority is not None:
        ticket.priority = priority
    if assignee_id is not None:
        ticket.assignee_id = assignee_id or None
    if subject is not None:
        ticket.subject = subject.strip()
    if category is not None:
        ticket.category = category.strip() or None
    if team is not None:
        ticket.team = team.strip() or None
    after = _snapshot(ticket)
    if after == before:
        return ticket
    ticket.updated_at = when
    await session.flush()
    if ticket.status != old_status:
        await sla.status_changed(session=session, ticket=ticket, old=old_status, now=when)
    if before_resolved is None and ticket.resolved_at is not None:
        await csat.ticket_resolved(session=session, ticket=ticket, now=when)  # the CSAT request of this resolution
    if ticket.status in OPEN_STATUSES and any(before[k] != after[k] for k in ("priority", "category", "team")):
        await sla.recompute_ticket(session=session, ticket=ticket, now=when)
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="ticket",
        entity_id=ticket.id,
        before=before,
        after=after,
    )
    changed = [name for name in after if after[name] != before[name]]
    also = [before["assignee_id"]] if before["assignee_id"] != after["assignee_id"] else []
    await announce(session=session, ticket=ticket, change=", ".join(changed), actor=actor, also=also, now=when)
    record_event(
        session,
        TicketUpdated(
            ticket_id=ticket.id,
            number=ticket.number,
            changed=tuple(key for key in after if after[key] != before[key]),
            status=ticket.status,
            priority=ticket.priority,
            assignee_id=ticket.assignee_id,
            team=ticket.team,
            updated_at=when,
        ),
    )
    return ticket


async def announce(
    *,
    session: AsyncSession,
    ticket: Ticket,
    change: str,
    actor: Actor,
    also: list[str | None] | None = None,
    now: datetime | None = None,
) -> None:
    """Tell the ticket's people (assignee, watchers, and `also`: e.g. the assignee it was taken from) what changed,
    after commit; not the one who changed it, who sees it already."""
    people = set(await session.scalars(select(TicketWatcher.user_id).where(TicketWatcher.ticket_id == ticket.id)))
    people |= {u for u in (ticket.assignee_id, *(also or ())) if u}
    people.discard(actor.user_id or "")
    record_event(
        session,
        TicketChanged(
            ticket_id=ticket.id,
            ticket_number=ticket.number,
            change=change,
            actor_id=actor.user_id,
            audience=tuple(sorted(people)),
            at=now or utcnow(),
            merged_into_id=ticket.merged_into_id,
        ),
    )


async def _check_assignee(*, session: AsyncSession, user_id: str) -> None:
    user = await session.get(User, user_id)
    if user is None or not user.is_active or user.role not in (Role.AGENT.value, Role.SUPERVISOR.value):
        raise InvalidTicketChange("The assignee must be an active agent or supervisor.", field="assignee_id")


async def add_message(
    *,
    session: AsyncSession,
    actor: Actor,
    ticket_id: str,
    body: str,
    kind: str = "reply",
    now: datetime | None = None,
) -> TicketMessage:
    """Add to the conversation: a reply (the customer sees it) or an internal note (staff only). A reply is the
    agent's response: it satisfies first response and restarts next response; a note changes no clock."""
    if kind not in ("reply", "note"):
        raise InvalidTicketChange("kind must be reply or note.", field="kind")
    if not body.strip():
        raise InvalidTicketChange("Write something first: the message is empty.", field="body")
    if len(body) > 20000:
        raise InvalidTicketChange("A message is at most 20,000 characters.", field="body")
    ticket = await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    when = now or utcnow()
    message = TicketMessage(ticket_id=ticket.id, kind=kind, author_id=actor.user_id, body=body.strip(), created_at=when)
    session.add(message)
    ticket.updated_at = when
    if kind == "reply":
        if ticket.first_response_at is None:
            ticket.first_response_at = when
        await sla.agent_replied(session=session, ticket=ticket, now=when)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="ticket_message",
        entity_id=message.id,
        after={"ticket_id": ticket.id, "kind": kind, "length": len(message.body)},
    )
    await announce(session=session, ticket=ticket, change=kind, actor=actor, now=when)
    return message


async def ticket_messages(*, session: AsyncSession, actor: Actor, ticket_id: str) -> list[TicketMessage]:
    await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    query = select(TicketMessage).where(TicketMessage.ticket_id == ticket_id)
    return list(await session.scalars(query.order_by(TicketMessage.created_at, TicketMessage.id)))


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


VIEWS = ("all", "mine", "team", "unassigned", "breaching", "overdue", "pending")
VIEW_LABELS = {
    "all": "All open",
    "mine": "Mine",
    "team": "My team",
    "unassigned": "Unassigned",
    "breaching": "Breaching soon",
    "overdue": "Overdue",
    "pending": "Pending customer",
}
SORTS = ("created", "-created", "updated", "-updated", "priority", "-priority", "number", "-number", "due", "-due")
MAX_PAGE_SIZE = 100
_PRIORITY_RANK = case({p: i for i, p in enumerate(PRIORITIES)}, value=Ticket.priority, else_=0)


@dataclass(frozen=True, slots=True)
class TicketFilters:
    """What the desk's list shows: a saved view, filters, a sort and a page."""

    view: str = "all"
    status: str | None = None
    priority: str | None = None
    customer_id: str | None = None
    category: str | None = None
    team: str | None = None
    tag: str | None = None
    older_than_days: int | None = None
    sort: str = "-created"
    page: int = 1
    page_size: int = 25

    def check(self) -> None:
        if self.view not in VIEWS:
            raise InvalidTicketChange(f"view must be one of {', '.join(VIEWS)}.", field="view")
        if self.status is not None and self.status not in STATUSES:
            raise InvalidTicketChange(f"status must be one of {', '.join(STATUSES)}.", field="status")
        if self.priority is not None and self.priority not in PRIORITIES:
            raise InvalidTicketChange(f"priority must be one of {', '.join(PRIORITIES)}.", field="priority")
        if self.sort not in SORTS:
            raise InvalidTicketChange(f"sort must be one of {', '.join(SORTS)}.", field="sort")
        if self.page < 1:
            raise InvalidTicketChange("page must be 1 or more.", field="page")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise InvalidTicketChange(f"page_size must be from 1 to {MAX_PAGE_SIZE}.", field="page_size")
        if self.tag is not None and len(self.tag) > TAG_LENGTH:
            raise InvalidTicketChange(f"tag is at most {TAG_LENGTH} characters.", field="tag")
        if self.older_than_days is not None and self.older_than_days < 0:
            raise InvalidTicketChange("age must be 0 days or more.", field="older_than_days")


@dataclass(frozen=True, slots=True)
class TicketRow:
    ticket: Ticket
    customer_name: str | None
    assignee_name: str | None
    next_clock: SlaClock | None


@dataclass(frozen=True, slots=True)
class TicketPage:
    rows: list[TicketRow]
    page: int
    has_more: bool


def _active_clocks_where(*conditions: Any) -> Any:
    return Ticket.id.in_(select(SlaClock.ticket_id).where(SlaClock.stopped_at.is_(None), *conditions))


async def _view_query(*, session: AsyncSession, actor: Actor, filters: TicketFilters, now: datetime) -> Select[Any]:
    query = select(Ticket)
    view = filters.view
    if filters.status is not None:
        query = query.where(Ticket.status == filters.status)
    elif view == "pending":
        query = query.where(Ticket.status == "pending")
    else:
        query = query.where(text(f"tickets.{OPEN_CONDITION}"))
    if view == "pending":
        query = query.where(Ticket.status == "pending")
    elif view == "mine":
        query = query.where(Ticket.assignee_id == actor.user_id)
    elif view == "team":
        queues: list[Any] = []
        if actor.user_id:
            queues = list(await session.scalar(select(User.queues).where(User.id == actor.user_id)) or [])
        teams = [str(q) for q in queues]
        query = query.where(Ticket.team.in_(teams)) if teams else query.where(Ticket.id.is_(None))
    elif view == "unassigned":
        query = query.where(Ticket.assignee_id.is_(None))
    elif view == "breaching":
        query = query.where(_active_clocks_where(SlaClock.warned_at.is_not(None), SlaClock.breached_at.is_(None)))
    elif view == "overdue":
        query = query.where(_active_clocks_where(SlaClock.breached_at.is_not(None)))
    if filters.priority is not None:
        query = query.where(Ticket.priority == filters.priority)
    if filters.customer_id:
        query = query.where(Ticket.customer_id == filters.customer_id)
    if filters.category:
        query = query.where(Ticket.category == filters.category)
    if filters.team:
        query = query.where(Ticket.team == filters.team)
    if filters.tag:
        query = query.where(Ticket.id.in_(select(TicketTag.ticket_id).where(TicketTag.tag == filters.tag)))
    if filters.older_than_days is not None:
        query = query.where(Ticket.created_at <= now - timedelta(days=filters.older_than_days))
    descending = filters.sort.startswith("-")
    column: Any = {
        "created": Ticket.created_at,
        "updated": Ticket.updated_at,
        "priority": _PRIORITY_RANK,
        "number": Ticket.number,
        "due": Ticket.due_at,
    }[filters.sort.lstrip("-")]
    order = column.desc() if descending else column.asc()
    if filters.sort.lstrip("-") == "due":
        order = order.nulls_last()
    tiebreak = Ticket.number.desc() if descending else Ticket.number.asc()
    return query.order_by(order, tiebreak)


async def list_tickets(
    *, session: AsyncSession, actor: Actor, filters: TicketFilters, now: datetime | None = None
) -> TicketPage:
    """One page of the desk's list (one row more is read to know whether there is a next page, never a count of a
    large backlog), with each ticket's customer, assignee and the active clock due first."""
    require_role(actor, *STAFF)
    filters.check()
    when = now or utcnow()
    query = await _view_query(session=session, actor=actor, filters=filters, now=when)
    offset = (filters.page - 1) * filters.page_size
    tickets = list(await session.scalars(query.offset(offset).limit(filters.page_size + 1)))
    has_more = len(tickets) > filters.page_size
    tickets = tickets[: filters.page_size]
    ids = [t.id for t in tickets]
    customers = {t.customer_id for t in tickets if t.customer_id}
    users = {t.assignee_id for t in tickets if t.assignee_id}
    names: dict[str, str] = {}
    if customers:
        names.update(
            {
                cid: name
                for cid, name in await session.execute(
                    select(Customer.id, Customer.name).where(Customer.id.in_(customers))
                )
            }
        )
    agents: dict[str, str] = {}
    if users:
        agents = {
            uid: name
            for uid, name in await session.execute(select(User.id, User.display_name).where(User.id.in_(users)))
        }
    clocks: dict[str, SlaClock] = {}
    if ids:
        for clock in await session.scalars(
            select(SlaClock).where(SlaClock.ticket_id.in_(ids), SlaClock.stopped_at.is_(None))
        ):
            known = clocks.get(clock.ticket_id)
            if known is None or _clock_order(clock) < _clock_order(known):
                clocks[clock.ticket_id] = clock
    rows = [
        TicketRow(
            ticket=t,
            customer_name=names.get(t.customer_id or ""),
            assignee_name=agents.get(t.assignee_id or ""),
            next_clock=clocks.get(t.id),
        )
        for t in tickets
    ]
    return TicketPage(rows=rows, page=filters.page, has_more=has_more)


_NEVER = datetime.max.replace(tzinfo=UTC)


def _clock_order(clock: SlaClock) -> tuple[int, datetime, str]:
    # running clocks by due time first, then paused ones
    return (0 if clock.due_at is not None else 1, clock.due_at or _NEVER, clock.kind)


# ---- watchers, tags, merging duplicates ------------------------------------------------------------------------

MAX_TAGS = 20
_TAG = re.compile(r"[a-z0-9][a-z0-9._-]*")


async def ticket_watchers(*, session: AsyncSession, actor: Actor, ticket_id: str) -> list[User]:
    await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    query = (
        select(User)
        .join(TicketWatcher, TicketWatcher.user_id == User.id)
        .where(TicketWatcher.ticket_id == ticket_id)
        .order_by(User.display_name)
    )
    return list(await session.scalars(query))


async def ticket_tags(*, session: AsyncSession, actor: Actor, ticket_id: str) -> list[str]:
    await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    return list(await session.scalars(select(TicketTag.tag).where(TicketTag.ticket_id == ticket_id).order_by("tag")))


async def add_watcher(
    *, session: AsyncSession, actor: Actor, ticket_id: str, user_id: str, now: datetime | None = None
) -> bool:
    """Someone follows the ticket (staff watch themselves or a colleague); False when they already did."""
    ticket = await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    check_text(user_id, field="user_id", max_length=ID_LENGTH, required=True)
    user = await session.get(User, user_id)
    if user is None or not user.is_active or user.role not in (Role.AGENT.value, Role.SUPERVISOR.value):
        raise InvalidTicketChange("A watcher must be an active agent or supervisor.", field="user_id")
    if await session.get(TicketWatcher, (ticket.id, user_id)) is not None:
        return False
    session.add(TicketWatcher(ticket_id=ticket.id, user_id=user_id, added_by=actor.user_id, added_at=now or utcnow()))
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="ticket_watcher",
        entity_id=ticket.id,
        after={"ticket_id": ticket.id, "user_id": user_id},
    )
    await announce(session=session, ticket=ticket, change="watchers", actor=actor, now=now)
    return True


async def remove_watcher(
    *, session: AsyncSession, actor: Actor, ticket_id: str, user_id: str, now: datetime | None = None
) -> bool:
    """Stop following: oneself, or anyone for a supervisor or the ticket's assignee."""
    ticket = await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    if user_id != actor.user_id and not _may_manage(actor, ticket):
        raise PermissionDenied("Only the assignee or a supervisor takes someone else off the watchers.")
    watcher = await session.get(TicketWatcher, (ticket.id, user_id))
    if watcher is None:
        return False
    await session.delete(watcher)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="delete",
        entity_type="ticket_watcher",
        entity_id=ticket.id,
        before={"ticket_id": ticket.id, "user_id": user_id},
    )
    await announce(session=session, ticket=ticket, change="watchers", actor=actor, also=[user_id], now=now)
    return True


def check_tag(tag: str) -> str:
    """A tag is one lower-case word of letters, digits, '.', '_' or '-' (at most 48 characters)."""
    cleaned = tag.strip().lower()
    if not cleaned:
        raise InvalidTicketChange("Write a tag first.", field="tag")
    if len(cleaned) > TAG_LENGTH or not _TAG.fullmatch(cleaned):
        raise InvalidTicketChange(
            f"A tag is one word of letters, digits, '.', '_' or '-', at most {TAG_LENGTH} characters.", field="tag"
        )
    return cleaned


async def add_tag(
    *, session: AsyncSession, actor: Actor, ticket_id: str, tag: str, now: datetime | None = None
) -> bool:
    cleaned = check_tag(tag)
    ticket = await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    tags = set(await session.scalars(select(TicketTag.tag).where(TicketTag.ticket_id == ticket.id)))
    if cleaned in tags:
        return False
    if len(tags) >= MAX_TAGS:
        raise InvalidTicketChange(f"A ticket has at most {MAX_TAGS} tags.", field="tag")
    session.add(TicketTag(ticket_id=ticket.id, tag=cleaned))
    ticket.updated_at = now or utcnow()
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="ticket",
        entity_id=ticket.id,
        before={"tags": sorted(tags)},
        after={"tags": sorted(tags | {cleaned})},
    )
    await announce(session=session, ticket=ticket, change="tags", actor=actor, now=now)
    return True


async def remove_tag(
    *, session: AsyncSession, actor: Actor, ticket_id: str, tag: str, now: datetime | None = None
) -> bool:
    ticket = await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    tags = set(await session.scalars(select(TicketTag.tag).where(TicketTag.ticket_id == ticket.id)))
    cleaned = tag.strip().lower()
    if cleaned not in tags:
        return False
    await session.execute(delete(TicketTag).where(TicketTag.ticket_id == ticket.id, TicketTag.tag == cleaned))
    ticket.updated_at = now or utcnow()
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="ticket",
        entity_id=ticket.id,
        before={"tags": sorted(tags)},
        after={"tags": sorted(tags - {cleaned})},
    )
    await announce(session=session, ticket=ticket, change="tags", actor=actor, now=now)
    return True


def _may_manage(actor: Actor, ticket: Ticket) -> bool:
    """Supervisors and admins manage any ticket; an agent the ones assigned to them or to nobody."""
    if actor.role in (Role.SUPERVISOR, Role.ADMIN):
        return True
    return ticket.assignee_id in (None, actor.user_id)


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    survivor: Ticket
    merged: Ticket
    messages: int
    links: int
    watchers: int
    tags: int


async def merge_tickets(
    *, session: AsyncSession, actor: Actor, survivor_id: str, duplicate_id: str, now: datetime | None = None
) -> MergeOutcome:
    """Merge a duplicate into the surviving ticket: its replies, notes, call/SMS links, watchers and tags move over
    (its assignee becomes a watcher), it is closed with its clocks cancelled and points to the survivor; audited on
    both. An agent merges only tickets that are theirs or nobody's."""
    require_role(actor, *STAFF)
    check_text(duplicate_id, field="duplicate_id", max_length=ID_LENGTH, required=True)
    survivor = await get_ticket(session=session, actor=actor, ticket_id=survivor_id)
    duplicate = await session.get(Ticket, duplicate_id)
    if duplicate is None:
        raise NotFound("There is no such ticket to merge.", field="duplicate_id", ticket_id=duplicate_id)
    if duplicate.id == survivor.id:
        raise InvalidTicketChange("A ticket cannot be merged into itself.", field="duplicate_id")
    if duplicate.merged_into_id is not None:
        raise InvalidTicketChange(f"Ticket {duplicate.number} was already merged.", field="duplicate_id")
    if survivor.merged_into_id is not None:
        raise InvalidTicketChange(f"Ticket {survivor.number} was itself merged away.", field="survivor_id")
    for ticket in (survivor, duplicate):
        if not _may_manage(actor, ticket):
            raise PermissionDenied(f"Ticket {ticket.number} is someone else's: ask its assignee or a supervisor.")
    when = now or utcnow()
    before = _snapshot(duplicate)
    moved_messages = await session.execute(
        update(TicketMessage).where(TicketMessage.ticket_id == duplicate.id).values(ticket_id=survivor.id)
    )
    moved_links = await session.execute(
        update(TicketLink).where(TicketLink.ticket_id == duplicate.id).values(ticket_id=survivor.id)
    )
    watching = set(await session.scalars(select(TicketWatcher.user_id).where(TicketWatcher.ticket_id == survivor.id)))
    incoming = set(await session.scalars(select(TicketWatcher.user_id).where(TicketWatcher.ticket_id == duplicate.id)))
    if duplicate.assignee_id:
        incoming.add(duplicate.assignee_id)
    new_watchers = sorted(incoming - watching - {survivor.assignee_id})
    await session.execute(delete(TicketWatcher).where(TicketWatcher.ticket_id == duplicate.id))
    for user_id in new_watchers:
        session.add(TicketWatcher(ticket_id=survivor.id, user_id=user_id, added_by=actor.user_id, added_at=when))
    tags = set(await session.scalars(select(TicketTag.tag).where(TicketTag.ticket_id == survivor.id)))
    incoming_tags = set(await session.scalars(select(TicketTag.tag).where(TicketTag.ticket_id == duplicate.id)))
    new_tags = sorted(incoming_tags - tags)[: max(MAX_TAGS - len(tags), 0)]
    await session.execute(delete(TicketTag).where(TicketTag.ticket_id == duplicate.id))
    for tag in new_tags:
        session.add(TicketTag(ticket_id=survivor.id, tag=tag))
    if survivor.customer_id is None and duplicate.customer_id is not None:
        survivor.customer_id = duplicate.customer_id
    session.add(
        TicketMessage(
            ticket_id=survivor.id,
            kind="note",
            author_id=actor.user_id,
            body=f"Ticket {duplicate.number} ({duplicate.subject}) was merged into this one.",
            created_at=when,
        )
    )
    old_status = duplicate.status
    duplicate.merged_into_id = survivor.id
    duplicate.status = "closed"
    duplicate.resolved_at = duplicate.resolved_at or when
    duplicate.updated_at = survivor.updated_at = when
    await session.flush()
    if old_status not in CLOSED_STATUSES:
        await sla.ticket_merged_away(session=session, ticket=duplicate, now=when)
    outcome = MergeOutcome(
        survivor=survivor,
        merged=duplicate,
        messages=int(getattr(moved_messages, "rowcount", 0) or 0),
        links=int(getattr(moved_links, "rowcount", 0) or 0),
        watchers=len(new_watchers),
        tags=len(new_tags),
    )
    moved = {"messages": outcome.messages, "links": outcome.links, "watchers": new_watchers, "tags": new_tags}
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="merge",
        entity_type="ticket",
        entity_id=duplicate.id,
        before=before,
        after=_snapshot(duplicate) | {"merged_into": survivor.id, "merged_into_number": survivor.number},
    )
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="ticket",
        entity_id=survivor.id,
        after={"merged_from": duplicate.id, "merged_from_number": duplicate.number, "moved": moved},
    )
    await announce(session=session, ticket=survivor, change="merged", actor=actor, now=when)
    await announce(session=session, ticket=duplicate, change="merged", actor=actor, also=list(incoming), now=when)
    return outcome


# ---- the wallboard's tickets at risk ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AtRiskClock:
    clock: SlaClock
    ticket: Ticket
    assignee_name: str | None


@dataclass(frozen=True, slots=True)
class AtRisk:
    rows: list[AtRiskClock]
    breached: int  # active clocks past their due time
    warned: int  # active clocks past their warning, not yet due


async def at_risk_clocks(*, session: AsyncSession, actor: Actor, limit: int = 20) -> AtRisk:
    """Active clocks past their warning threshold (breached first, then by due time), with their tickets; read
    through the partial index of such clocks, so the size of the backlog does not matter."""
    require_role(actor, Role.SUPERVISOR)
    at_risk = text(f"sla_clocks.{AT_RISK_CONDITION.replace(' AND ', ' AND sla_clocks.')}")
    counts = await session.execute(
        select(SlaClock.breached_at.is_not(None), func.count())
        .where(at_risk)
        .group_by(SlaClock.breached_at.is_not(None))
    )
    by_state = {bool(breached): int(n) for breached, n in counts}
    query = (
        select(SlaClock, Ticket, User.display_name)
        .join(Ticket, Ticket.id == SlaClock.ticket_id)
        .outerjoin(User, User.id == Ticket.assignee_id)
        .where(at_risk)
        .order_by(SlaClock.breached_at.is_(None), SlaClock.due_at.asc().nulls_last(), Ticket.number)
        .limit(limit)
    )
    rows = [AtRiskClock(clock, ticket, name) for clock, ticket, name in await session.execute(query)]
    return AtRisk(rows=rows, breached=by_state.get(True, 0), warned=by_state.get(False, 0))
