"""Service-desk reports (supervisors): SLA compliance by team, priority, clock and day, the backlog by age,
first-contact resolution, average first response, resolution and handle times, and CSAT when tickets carry it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, and_, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.calls.models import CallLog
from crm_core.errors import ValidationFailed
from crm_core.sla.models import SlaClock
from crm_core.tickets.csat_models import TicketCsat
from crm_core.tickets.models import CLOSED_STATUSES, OPEN_STATUSES, Ticket, TicketLink, TicketMessage
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

MAX_DAYS = 366
# the backlog's age buckets: (label, from days, to days)
AGE_BUCKETS = (
    ("under 1 day", 0, 1),
    ("1–3 days", 1, 3),
    ("3–7 days", 3, 7),
    ("7–30 days", 7, 30),
    ("30+ days", 30, None),
)
CSV_COLUMNS = ["section", "key", "met", "breached", "compliance_pct", "value"]


@dataclass(frozen=True, slots=True)
class Compliance:
    """Clocks stopped in the period by outcome: met on time or breached."""

    key: str
    met: int
    breached: int

    @property
    def total(self) -> int:
        return self.met + self.breached

    @property
    def pct(self) -> float | None:
        return round(100 * self.met / self.total, 1) if self.total else None


@dataclass(frozen=True, slots=True)
class Csat:
    responses: int
    average: float | None
    by_score: dict[int, int]


@dataclass(slots=True)
class TicketReport:
    start: datetime
    end: datetime
    by_team: list[Compliance] = field(default_factory=list)
    by_priority: list[Compliance] = field(default_factory=list)
    by_clock: list[Compliance] = field(default_factory=list)
    by_day: list[Compliance] = field(default_factory=list)
    backlog: list[tuple[str, int]] = field(default_factory=list)
    resolved: int = 0
    first_contact_resolved: int = 0
    average_first_response_minutes: float | None = None
    average_resolution_hours: float | None = None
    average_handle_seconds: float | None = None
    csat: Csat | None = None

    @property
    def total(self) -> Compliance:
        return Compliance("all", sum(c.met for c in self.by_team), sum(c.breached for c in self.by_team))

    @property
    def fcr_pct(self) -> float | None:
        return round(100 * self.first_contact_resolved / self.resolved, 1) if self.resolved else None

    @staticmethod
    def widest(rows: list[Compliance]) -> int:
        """The largest total of one row (at least 1): the scale of a compliance bar chart."""
        return max((row.total for row in rows), default=0) or 1

    def largest_backlog(self) -> int:
        return max((n for _label, n in self.backlog), default=0) or 1

    def csv_rows(self) -> Iterator[dict[str, str]]:
        def row(section: str, key: str, **values: object) -> dict[str, str]:
            out = dict.fromkeys(CSV_COLUMNS, "")
            out.update({"section": section, "key": key})
            out.update({k: "" if v is None else str(v) for k, v in values.items()})
            return out

        for section, rows in (
            ("sla_by_team", self.by_team),
            ("sla_by_priority", self.by_priority),
            ("sla_by_clock", self.by_clock),
            ("sla_by_day", self.by_day),
        ):
            for c in rows:
                yield row(section, c.key, met=c.met, breached=c.breached, compliance_pct=c.pct)
        for label, count in self.backlog:
            yield row("backlog_by_age", label, value=count)
        yield row("resolved", "tickets", value=self.resolved)
        yield row("first_contact_resolution", "pct", value=self.fcr_pct)
        yield row("average_first_response", "minutes", value=self.average_first_response_minutes)
        yield row("average_resolution", "hours", value=self.average_resolution_hours)
        yield row("average_handle", "seconds", value=self.average_handle_seconds)
        if self.csat is not None:
            yield row("csat", "responses", value=self.csat.responses)
            yield row("csat", "average", value=self.csat.average)


def _seconds_between(session: AsyncSession, later: Any, earlier: Any) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _day(session: AsyncSession, column: Any) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)


async def _compliance(
    session: AsyncSession, key: ColumnElement[Any] | Any, start: datetime, end: datetime
) -> list[Compliance]:
    query = (
        select(
            key.label("key"),
            func.sum(case((SlaClock.status == "met", 1), else_=0)),
            func.sum(case((SlaClock.status == "breached", 1), else_=0)),
        )
        .join(Ticket, Ticket.id == SlaClock.ticket_id)
        .where(SlaClock.stopped_at >= start, SlaClock.stopped_at < end, SlaClock.status.in_(("met", "breached")))
        .group_by(key)
        .order_by(key)
    )
    return [
        Compliance(str(k) if k is not None else "no team", int(met or 0), int(late or 0))
        for k, met, late in await session.execute(query)
    ]


async def csat_summary(*, session: AsyncSession, start: datetime, end: datetime) -> Csat:
    """CSAT of the resolutions in the period: the scores customers gave (by SMS or the IVR survey), one per
    resolution (crm_core/tickets/csat.py)."""
    rows = await session.execute(
        select(TicketCsat.score, func.count())
        .where(TicketCsat.resolved_at >= start, TicketCsat.resolved_at < end, TicketCsat.score.is_not(None))
        .group_by(TicketCsat.score)
    )
    by_score = {int(s or 0): int(n) for s, n in rows}
    responses = sum(by_score.values())
    average = round(sum(s * n for s, n in by_score.items()) / responses, 2) if responses else None
    return Csat(responses=responses, average=average, by_score=dict(sorted(by_score.items())))


async def ticket_report(
    *, session: AsyncSession, actor: Actor, start: datetime, end: datetime, now: datetime
) -> TicketReport:
    require_role(actor, Role.SUPERVISOR)
    if end <= start:
        raise ValidationFailed("The report's end must be after its start.", field="end")
    if end - start > timedelta(days=MAX_DAYS):
        raise ValidationFailed(f"A report covers at most {MAX_DAYS} days.", field="end")
    report = TicketReport(start=start, end=end)
    report.by_team = await _compliance(session, Ticket.team, start, end)
    report.by_priority = await _compliance(session, Ticket.priority, start, end)
    report.by_clock = await _compliance(session, SlaClock.kind, start, end)
    report.by_day = await _compliance(session, _day(session, SlaClock.stopped_at), start, end)

    buckets = []
    for _label, low, high in AGE_BUCKETS:
        condition = [Ticket.created_at <= now - timedelta(days=low)]
        if high is not None:
            condition.append(Ticket.created_at > now - timedelta(days=high))
        buckets.append(func.sum(case((and_(*condition), 1), else_=0)))
    counts = (await session.execute(select(*buckets).where(Ticket.status.in_(OPEN_STATUSES)))).one()
    report.backlog = [(label, int(n or 0)) for (label, _l, _h), n in zip(AGE_BUCKETS, counts, strict=True)]

    resolved_here = and_(
        Ticket.resolved_at >= start,
        Ticket.resolved_at < end,
        Ticket.status.in_(CLOSED_STATUSES),
        Ticket.merged_into_id.is_(None),
    )
    replies = (
        select(func.count())
        .where(TicketMessage.ticket_id == Ticket.id, TicketMessage.kind == "reply")
        .correlate(Ticket)
        .scalar_subquery()
    )
    resolved, first_contact, resolution_s = (
        await session.execute(
            select(
                func.count(),
                func.sum(case((replies <= 1, 1), else_=0)),
                func.avg(_seconds_between(session, Ticket.resolved_at, Ticket.created_at)),
            ).where(resolved_here)
        )
    ).one()
    report.resolved, report.first_contact_resolved = int(resolved or 0), int(first_contact or 0)
    report.average_resolution_hours = round(float(resolution_s) / 3600, 1) if resolution_s is not None else None
    first_response_s = await session.scalar(
        select(func.avg(_seconds_between(session, Ticket.first_response_at, Ticket.created_at))).where(
            Ticket.first_response_at >= start, Ticket.first_response_at < end
        )
    )
    report.average_first_response_minutes = (
        round(float(first_response_s) / 60, 1) if first_response_s is not None else None
    )
    handle_s = await session.scalar(
        select(func.avg(CallLog.talk_seconds + CallLog.hold_seconds))
        .join(TicketLink, TicketLink.call_id == CallLog.id)
        .join(Ticket, Ticket.id == TicketLink.ticket_id)
        .where(Ticket.created_at >= start, Ticket.created_at < end, CallLog.answered_at.is_not(None))
    )
    report.average_handle_seconds = round(float(handle_s), 1) if handle_s is not None else None
    report.csat = await csat_summary(session=session, start=start, end=end)
    return report
