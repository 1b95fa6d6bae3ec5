"""Tickets in the desktop: the desk's list (saved views, filters, sort, pages), a ticket's page (conversation,
status, priority, assignee, watchers, tags, merging a duplicate, SLA clocks), replies, internal notes and changes —
htmx partials for each swap; the wallboard's tickets at risk; the SLA set-up."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from quart import Blueprint, Response, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import STAFF, actor, day_argument, runtime
from crm_core.calls.models import CallLog
from crm_core.csv_safety import safe_row
from crm_core.customers.models import Customer
from crm_core.db import utcnow
from crm_core.errors import ValidationFailed
from crm_core.sla.calendar import BusinessCalendar
from crm_core.sla.models import SlaCalendar, SlaClock
from crm_core.sla.service import (
    CLOCK_LABELS,
    create_policy,
    import_holidays,
    list_policies,
    load_calendar,
    remaining_minutes,
    save_calendar,
    ticket_clocks,
    update_policy,
)
from crm_core.tickets.models import PRIORITIES, STATUSES, Ticket, TicketLink
from crm_core.tickets.reports import CSV_COLUMNS, TicketReport, ticket_report
from crm_core.tickets.service import (
    VIEW_LABELS,
    TicketFilters,
    add_message,
    add_tag,
    add_watcher,
    at_risk_clocks,
    create_ticket,
    find_ticket_by_number,
    get_ticket,
    list_tickets,
    merge_tickets,
    remove_tag,
    remove_watcher,
    ticket_messages,
    ticket_tags,
    ticket_watchers,
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
        tag=(args.get("tag") or "").strip().lower() or None,
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
    merged_from = list(
        await db.execute(select(Ticket.number, Ticket.subject).where(Ticket.merged_into_id == ticket.id))
    )
    return {
        "ticket": ticket,
        "me": me,
        "watchers": await ticket_watchers(session=db, actor=me, ticket_id=ticket.id),
        "tags": await ticket_tags(session=db, actor=me, ticket_id=ticket.id),
        "merged_from": merged_from,
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
    """A ticket; a duplicate merged away leads to the ticket it was merged into."""
    async with runtime().sessions() as db:
        ticket = await get_ticket(session=db, actor=actor(), ticket_id=ticket_id)
        if ticket.merged_into_id is not None and await db.get(Ticket, ticket.merged_into_id) is not None:
            target = url_for("tickets.ticket_page", ticket_id=ticket.merged_into_id, merged=ticket.number)
            return redirect(target, 303)
        context = await _ticket_context(db, actor(), ticket_id)
    if request.headers.get("HX-Request") == "true":  # the page reads the ticket again (a live change by someone)
        return await render_template("tickets/_ticket.html", **context)
    merged = request.args.get("merged", "")
    context["merged_notice"] = int(merged) if merged.isdigit() and len(merged) < 10 else None
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


@blueprint.post("/tickets/<ticket_id>/watchers")
@roles_allowed(*STAFF, api=True)
async def change_watchers(ticket_id: str) -> Any:
    """Watch (user_id, or oneself when empty) or stop watching (action=remove)."""
    form = await _form()
    me = actor()
    user_id = form.get("user_id", "").strip() or me.user_id or ""
    action = form.get("action", "add")
    if action not in ("add", "remove"):
        raise ValidationFailed("action must be add or remove.", field="action")
    async with runtime().unit_of_work() as db:
        if action == "add":
            await add_watcher(session=db, actor=me, ticket_id=ticket_id, user_id=user_id)
        else:
            await remove_watcher(session=db, actor=me, ticket_id=ticket_id, user_id=user_id)
    return await _after_change(ticket_id)


@blueprint.post("/tickets/<ticket_id>/tags")
@roles_allowed(*STAFF, api=True)
async def change_tags(ticket_id: str) -> Any:
    """Add a tag, or take one off (action=remove)."""
    form = await _form()
    action = form.get("action", "add")
    if action not in ("add", "remove"):
        raise ValidationFailed("action must be add or remove.", field="action")
    tag = form.get("tag", "")[:200]
    async with runtime().unit_of_work() as db:
        if action == "add":
            await add_tag(session=db, actor=actor(), ticket_id=ticket_id, tag=tag)
        else:
            await remove_tag(session=db, actor=actor(), ticket_id=ticket_id, tag=tag)
    return await _after_change(ticket_id)


@blueprint.post("/tickets/<ticket_id>/merge")
@roles_allowed(*STAFF, api=True)
async def merge_duplicate(ticket_id: str) -> Any:
    """Merge a duplicate, named by its number, into this ticket."""
    form = await _form()
    number = form.get("duplicate", "").strip().lstrip("#")
    if not number.isdigit() or len(number) > 9:
        raise ValidationFailed("Give the duplicate's ticket number, like 1042.", field="duplicate")
    async with runtime().unit_of_work() as db:
        await get_ticket(session=db, actor=actor(), ticket_id=ticket_id)
        duplicate = await find_ticket_by_number(session=db, number=int(number))
        if duplicate is None:
            raise ValidationFailed(f"There is no ticket {number}.", field="duplicate")
        await merge_tickets(session=db, actor=actor(), survivor_id=ticket_id, duplicate_id=duplicate.id)
    return await _after_change(ticket_id)


@blueprint.get("/tickets/at-risk")
@roles_allowed(Role.SUPERVISOR)
async def tickets_at_risk() -> Any:
    """The wallboard's SLA section: breached and warned clocks of open tickets, worst first (htmx swaps it in on
    load, on every live warning or breach, and every minute)."""
    now = utcnow()
    async with runtime().sessions() as db:
        found = await at_risk_clocks(session=db, actor=actor(), limit=20)
        rows = []
        calendars: dict[str | None, BusinessCalendar] = {}
        for item in found.rows:
            key = item.clock.calendar_id
            if key not in calendars:
                calendars[key] = await load_calendar(session=db, calendar_id=key)
            rows.append((item, clock_view(item.clock, calendars[key], now)))
    return await render_template("tickets/_at_risk.html", rows=rows, found=found)


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
        return "", 200, {"HX-Redirect": target}
    return redirect(target, 303)


# --- SLA set-up (supervisors): team calendars with holidays, policies with their targets ----------------------------

DAY_NAMES = {name: index for index, name in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))}


def parse_blocks(text: str) -> list[list[Any]]:
    """One block a line: "mon 09:00-12:00", a range of days "mon-fri 13:00-17:00", past midnight "fri 22:00-06:00"."""
    blocks: list[list[Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip().lower()
        if not line:
            continue
        parts = line.split()
        times = parts[1].split("-") if len(parts) == 2 else []
        days = parts[0].split("-") if parts else []
        if len(times) != 2 or not 1 <= len(days) <= 2 or any(d not in DAY_NAMES for d in days):
            raise ValidationFailed(f"Line {number} of the blocks is not like 'mon-fri 09:00-17:00'.", field="blocks")
        first, last = DAY_NAMES[days[0]], DAY_NAMES[days[-1]]
        for day in range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)]:
            blocks.append([day, times[0], times[1]])
    return blocks


def _minutes(form: dict[str, str], name: str) -> int | None:
    value = form.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ValidationFailed(f"{name} must be a whole number of minutes, or empty.", field=name)
    return int(value)


def _policy_values(form: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": form.get("name", "").strip()[:128],
        "priority": form.get("priority", "").strip() or None,
        "category": form.get("category", "").strip()[:64] or None,
        "vip_tier": form.get("vip_tier", "").strip()[:16] or None,
        "calendar_id": form.get("calendar_id", "").strip() or None,
        "first_response_minutes": _minutes(form, "first_response_minutes"),
        "next_response_minutes": _minutes(form, "next_response_minutes"),
        "resolution_minutes": _minutes(form, "resolution_minutes"),
        "paused_statuses": [s for s in ("pending", "on_hold", "new", "open") if form.get(f"pause_{s}") == "1"],
    }
    percent = form.get("warning_percent", "").strip() or "75"
    if not percent.isdigit():
        raise ValidationFailed("warning_percent must be a whole number from 1 to 99.", field="warning_percent")
    values["warning_percent"] = int(percent)
    return values


def _back_to_sla() -> Any:
    """htmx reloads the page (with what was saved); a plain form post is sent back to it."""
    if request.headers.get("HX-Request") == "true":
        return "", 200, {"HX-Refresh": "true"}
    return redirect(url_for("tickets.sla_settings"), 303)


async def _sla_page() -> Any:
    async with runtime().sessions() as db:
        policies = await list_policies(session=db, actor=actor())
        calendars = list(await db.scalars(select(SlaCalendar).order_by(SlaCalendar.team)))
    names = {c.id: c.team for c in calendars}
    return await render_template(
        "tickets/sla.html",
        policies=policies,
        calendars=calendars,
        calendar_names=names,
        priorities=PRIORITIES,
        day_names=list(DAY_NAMES),
    )


@blueprint.get("/tickets/sla")
@roles_allowed(Role.SUPERVISOR)
async def sla_settings() -> Any:
    return await _sla_page()


@blueprint.post("/tickets/sla/policies")
@roles_allowed(Role.SUPERVISOR, api=True)
async def sla_new_policy() -> Any:
    """A new policy; the open tickets' clocks are recomputed at once."""
    values = _policy_values(await _form())
    async with runtime().unit_of_work() as db:
        if values["calendar_id"] and await db.get(SlaCalendar, values["calendar_id"]) is None:
            raise ValidationFailed("calendar_id names no calendar.", field="calendar_id")
        await create_policy(session=db, actor=actor(), **values)
    return _back_to_sla()


@blueprint.post("/tickets/sla/policies/<policy_id>")
@roles_allowed(Role.SUPERVISOR, api=True)
async def sla_switch_policy(policy_id: str) -> Any:
    """Switch a policy on or off; the open tickets' clocks follow at once."""
    form = await _form()
    if form.get("is_active") not in ("0", "1"):
        raise ValidationFailed("is_active must be 0 or 1.", field="is_active")
    async with runtime().unit_of_work() as db:
        await update_policy(session=db, actor=actor(), policy_id=policy_id, is_active=form["is_active"] == "1")
    return _back_to_sla()


@blueprint.post("/tickets/sla/calendars")
@roles_allowed(Role.SUPERVISOR, api=True)
async def sla_save_calendar() -> Any:
    """A team's business hours (replacing what it had; holidays are kept)."""
    form = await _form()
    team = form.get("team", "").strip()[:64]
    async with runtime().unit_of_work() as db:
        known = await db.scalar(select(SlaCalendar).where(SlaCalendar.team == team)) if team else None
        holidays = [date.fromisoformat(str(d)) for d in known.holidays] if known is not None else []
        await save_calendar(
            session=db,
            actor=actor(),
            team=team,
            time_zone=form.get("time_zone", "").strip(),
            blocks=parse_blocks(form.get("blocks", "")),
            holidays=holidays,
        )
    return _back_to_sla()


@blueprint.post("/tickets/sla/calendars/<calendar_id>/holidays")
@roles_allowed(Role.SUPERVISOR, api=True)
async def sla_import_holidays(calendar_id: str) -> Any:
    """Holidays from an iCal file (all-day events); a bad file changes nothing and says which line."""
    files = await request.files
    upload = files.get("file")
    if upload is None or not upload.filename:
        raise ValidationFailed("Choose an iCal (.ics) file.", field="file")
    content = upload.read(2_000_001)
    if len(content) > 2_000_000:
        raise ValidationFailed("The holiday file is larger than 2 MB.", field="file")
    async with runtime().unit_of_work() as db:
        await import_holidays(session=db, actor=actor(), calendar_id=calendar_id, content=content)
    return _back_to_sla()


# --- reports (supervisors): SLA compliance, backlog, first-contact resolution, times, CSAT -------------------------


async def _ticket_report() -> TicketReport:
    today = utcnow().date()
    start = day_argument(request.args.get("start"), today - timedelta(days=29), name="start")
    end = day_argument(request.args.get("end"), today, name="end")
    if end >= date.max or start >= date.max:
        raise ValidationFailed(f"Dates must be before {date.max.isoformat()}.", field="end")
    async with runtime().sessions() as db:
        return await ticket_report(
            session=db,
            actor=actor(),
            start=datetime.combine(start, time(), UTC),
            end=datetime.combine(end + timedelta(days=1), time(), UTC),
            now=utcnow(),
        )


@blueprint.get("/reports/tickets")
@roles_allowed(Role.SUPERVISOR)
async def ticket_reports() -> Any:
    report = await _ticket_report()
    last_day = (report.end - timedelta(days=1)).date()
    return await render_template("reports/tickets.html", report=report, args=request.args, last_day=last_day)


@blueprint.get("/reports/tickets.csv")
@roles_allowed(Role.SUPERVISOR)
async def ticket_reports_csv() -> Any:
    report = await _ticket_report()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for row in report.csv_rows():
        writer.writerow(safe_row(row))  # a team named =… stays text in a spreadsheet
    name = f"tickets-{report.start.date()}-{(report.end - timedelta(days=1)).date()}.csv"
    return Response(
        out.getvalue(), mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
