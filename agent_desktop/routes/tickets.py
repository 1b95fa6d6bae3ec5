"""Tickets in the desktop: the desk's list (saved views, filters, sort, pages), a ticket's page (conversation,
status, priority, assignee, SLA clocks), replies, internal notes and changes — htmx partials for each swap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from quart import Blueprint, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import STAFF, actor, runtime
from crm_core.calls.models import CallLog
from crm_core.customers.models import Customer
from crm_core.db import utcnow
from crm_core.errors import ValidationFailed
from crm_core.sla.calendar import BusinessCalendar
from crm_core.sla.models import SlaClock
from crm_core.sla.service import CLOCK_LABELS, load_calendar, remaining_minutes, ticket_clocks
from crm_core.tickets.models import PRIORITIES, STATUSES, TicketLink
from crm_core.tickets.service import (
    VIEW_LABELS,
    TicketFilters,
    add_message,
    create_ticket,
    get_ticket,
    list_tickets,
    ticket_messages,
    update_ticket,
)
from crm_core.users.models import Role, User
from crm_core.users.service import Actor

blueprint = Blueprint("tickets", __name__)
STATUS_LABELS = {
    "new": "New",
    "open": "Open",
    "pending": "Pending customer",
    "on_hold": "On hold",
    "resolved": "Resolved",
    "closed": "Closed",
}
SORT_LABELS = {
    "-created": "Newest",
    "created": "Oldest",
    "-updated": "Recently changed",
    "due": "Due first",
    "-priority": "Highest priority",
    "-number": "Number (high to low)",
    "number": "Number (low to high)",
}


def _duration(minutes: float) -> str:
    whole = round(abs(minutes))
    hours, rest = divmod(whole, 60)
    return f"{hours} h {rest:02d} min" if hours else f"{rest} min"


@dataclass(frozen=True, slots=True)
class ClockView:
    """What the page shows of one clock: its state, due time in the team's zone and business time left."""

    label: str
    state: str  # running|warning|overdue|paused|met|breached|cancelled
    due: str
    remaining: str


def clock_view(clock: SlaClock, calendar: BusinessCalendar, now: datetime) -> ClockView:
    label = CLOCK_LABELS.get(clock.kind, clock.kind)
    due = "—"
    if clock.due_at is not None:
        due = clock.due_at.astimezone(calendar.zone).strftime("%a %d %b %H:%M") + f" ({calendar.time_zone})"
    if clock.stopped_at is not None:
        margin = clock.margin_minutes or 0.0
        if clock.status == "cancelled":
            return ClockView(label, "cancelled", due, "not needed any more")
        text = f"{_duration(margin)} early" if margin >= 0 else f"{_duration(margin)} late"
        return ClockView(label, clock.status, due, text)
    left = remaining_minutes(clock, calendar, now)
    if clock.running_since is None:
        return ClockView(label, "paused", "paused", f"paused, {_duration(left)} of business time left")
    if left < 0 or clock.breached_at is not None:
        return ClockView(label, "overdue", due, f"overdue by {_duration(left)} of business time")
    state = "warning" if clock.warned_at is not None else "running"
    return ClockView(label, state, due, f"{_duration(left)} of business time left")


def _int_arg(name: str, default: int | None, *, low: int, high: int) -> int | None:
    value = request.args.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ValidationFailed(f"{name} must be a whole number from {low} to {high}.", field=name)
    return int(value)


def _filters() -> TicketFilters:
    args = request.args
    return TicketFilters(
        view=args.get("view", "all") or "all",
        status=args.get("status") or None,
        priority=args.get("priority") or None,
        customer_id=(args.get("customer") or "").strip()[:32] or None,
        older_than_days=_int_arg("age", None, low=0, high=3650),
        sort=args.get("sort", "-created") or "-created",
        page=_int_arg("page", 1, low=1, high=100_000) or 1,
    )


async def _list_context(db: AsyncSession, me: Actor) -> dict[str, Any]:
    filters = _filters()
    now = utcnow()
    found = await list_tickets(session=db, actor=me, filters=filters, now=now)
    calendars: dict[str | None, BusinessCalendar] = {}
    clocks: dict[str, ClockView] = {}
    for row in found.rows:
        if row.next_clock is None:
            continue
        key = row.next_clock.calendar_id
        if key not in calendars:
            calendars[key] = await load_calendar(session=db, calendar_id=key)
        clocks[row.ticket.id] = clock_view(row.next_clock, calendars[key], now)
    customer = await db.get(Customer, filters.customer_id) if filters.customer_id else None
    args = {k: v for k, v in request.args.items() if v and k != "page"}
    return {
        "found": found,
        "filters": filters,
        "clocks": clocks,
        "customer": customer,
        "args": args,
        "all_customers_args": {k: v for k, v in args.items() if k != "customer"},
        "views": VIEW_LABELS,
        "statuses": STATUS_LABELS,
        "priorities": PRIORITIES,
        "sorts": SORT_LABELS,
    }


@blueprint.get("/tickets")
@roles_allowed(*STAFF)
async def ticket_list() -> Any:
    """The desk's list; an htmx request (the filter form, a view, a page) gets only the results."""
    async with runtime().sessions() as db:
        context = await _list_context(db, actor())
    if request.headers.get("HX-Request") == "true":
        return await render_template("tickets/_results.html", **context)
    return await render_template("tickets/list.html", **context)


async def _ticket_context(db: AsyncSession, me: Actor, ticket_id: str) -> dict[str, Any]:
    ticket = await get_ticket(session=db, actor=me, ticket_id=ticket_id)
    now = utcnow()
    messages = await ticket_messages(session=db, actor=me, ticket_id=ticket.id)
    authors = {m.author_id for m in messages if m.author_id}
    names: dict[str, str] = {}
    if authors:
        found = await db.execute(select(User.id, User.display_name).where(User.id.in_(authors)))
        names = {uid: name for uid, name in found}
    clocks = []
    for clock in await ticket_clocks(session=db, ticket_id=ticket.id):
        calendar = await load_calendar(session=db, calendar_id=clock.calendar_id)
        clocks.append(clock_view(clock, calendar, now))
    staff = list(
        await db.scalars(
            select(User)
            .where(User.is_active.is_(True), User.role.in_((Role.AGENT.value, Role.SUPERVISOR.value)))
            .order_by(User.display_name)
            .limit(500)
        )
    )
    calls = list(
        await db.scalars(
            select(CallLog)
            .join(TicketLink, TicketLink.call_id == CallLog.id)
            .where(TicketLink.ticket_id == ticket.id)
            .order_by(CallLog.offered_at.desc())
        )
    )
    return {
        "ticket": ticket,
        "customer": await db.get(Customer, ticket.customer_id) if ticket.customer_id else None,
        "assignee": await db.get(User, ticket.assignee_id) if ticket.assignee_id else None,
        "replies": [m for m in messages if m.kind in ("reply", "customer")],
        "notes": [m for m in messages if m.kind == "note"],
        "names": names,
        "clocks": clocks,
        "staff": staff,
        "calls": calls,
        "statuses": STATUS_LABELS,
        "priorities": PRIORITIES,
    }


@blueprint.get("/tickets/<ticket_id>")
@roles_allowed(*STAFF)
async def ticket_page(ticket_id: str) -> Any:
    async with runtime().sessions() as db:
        context = await _ticket_context(db, actor(), ticket_id)
    return await render_template("tickets/ticket.html", **context)


@blueprint.get("/tickets/<ticket_id>/clocks")
@roles_allowed(*STAFF)
async def ticket_clocks_partial(ticket_id: str) -> Any:
    """The clocks again (the page asks every 30 s, so remaining business time counts down)."""
    async with runtime().sessions() as db:
        context = await _ticket_context(db, actor(), ticket_id)
    return await render_template("tickets/_clocks.html", **context)


async def _after_change(ticket_id: str) -> Any:
    if request.headers.get("HX-Request") == "true":
        async with runtime().sessions() as db:
            context = await _ticket_context(db, actor(), ticket_id)
        return await render_template("tickets/_ticket.html", **context)
    return redirect(url_for("tickets.ticket_page", ticket_id=ticket_id), 303)


async def _form() -> dict[str, str]:
    form = await request.form
    if form:
        return {k: str(v) for k, v in form.items()}
    data = await request.get_json(silent=True)
    return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}


@blueprint.post("/tickets/<ticket_id>/messages")
@roles_allowed(*STAFF, api=True)
async def post_message(ticket_id: str) -> Any:
    """A reply to the customer or an internal note (the button pressed says which)."""
    form = await _form()
    async with runtime().unit_of_work() as db:
        await add_message(
            session=db, actor=actor(), ticket_id=ticket_id, body=form.get("body", ""), kind=form.get("kind", "reply")
        )
    return await _after_change(ticket_id)


@blueprint.post("/tickets/<ticket_id>")
@roles_allowed(*STAFF, api=True)
async def change_ticket(ticket_id: str) -> Any:
    """Status, priority or assignee (an empty assignee unassigns)."""
    form = await _form()
    changes: dict[str, Any] = {}
    for name in ("status", "priority", "assignee_id"):
        if name in form:
            changes[name] = form[name].strip()
    if "status" in changes and changes["status"] not in STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}.", field="status")
    async with runtime().unit_of_work() as db:
        await update_ticket(session=db, actor=actor(), ticket_id=ticket_id, **changes)
    return await _after_change(ticket_id)


@blueprint.post("/tickets")
@roles_allowed(*STAFF, api=True)
async def new_ticket() -> Any:
    """A ticket by hand (subject, description, priority, team, customer)."""
    form = await _form()
    subject = form.get("subject", "")
    if len(subject) > 200:
        raise ValidationFailed("subject is at most 200 characters.", field="subject")
    async with runtime().unit_of_work() as db:
        customer_id = form.get("customer_id", "").strip() or None
        if customer_id and await db.get(Customer, customer_id) is None:
            raise ValidationFailed("customer_id names no customer.", field="customer_id")
        ticket = await create_ticket(
            session=db,
            actor=actor(),
            subject=subject,
            description=form.get("description", "")[:20000],
            priority=form.get("priority", "normal") or "normal",
            team=form.get("team", "")[:64] or None,
            customer_id=customer_id,
            assignee_id=actor().user_id if actor().role is not Role.ADMIN else None,
        )
    target = url_for("tickets.ticket_page", ticket_id=ticket.id)
    if request.headers.get("HX-Request") == "true":
        return "", 201, {"HX-Redirect": target}
    return redirect(target, 303)
