"""Call reports for supervisors: by queue, agent, hour and disposition over a date range; calls per interval today."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.calls.models import CallLog
from crm_core.calls.service import SURVEY_ONLY
from crm_core.errors import ValidationFailed
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

MAX_DAYS = 366
# A survey-only row (a Twilio Voice caller's score, no PBX call) is not a call offered to the center.
_OFFERED_TO_THE_CENTER = or_(CallLog.outcome.is_(None), CallLog.outcome != SURVEY_ONLY)


@dataclass
class Figures:
    key: str
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    answered_in_time: int = 0
    wait_total: float = 0.0
    talk_total: float = 0.0

    def add(self, call: CallLog, service_level_seconds: int) -> None:
        self.offered += 1
        if call.outcome == "answered":
            self.answered += 1
            self.talk_total += call.talk_seconds or 0.0
            self.wait_total += call.wait_seconds or 0.0
            if (call.wait_seconds or 0.0) <= service_level_seconds:
                self.answered_in_time += 1
        elif call.outcome == "abandoned":
            self.abandoned += 1

    @property
    def service_level_pct(self) -> float | None:
        counted = self.answered + self.abandoned
        return round(100.0 * self.answered_in_time / counted, 1) if counted else None

    @property
    def average_wait(self) -> float:
        return round(self.wait_total / self.answered, 1) if self.answered else 0.0

    @property
    def average_talk(self) -> float:
        return round(self.talk_total / self.answered, 1) if self.answered else 0.0

    def as_row(self, dimension: str) -> dict[str, str]:
        sl = self.service_level_pct
        return {
            "dimension": dimension,
            "key": self.key,
            "offered": str(self.offered),
            "answered": str(self.answered),
            "abandoned": str(self.abandoned),
            "service_level_pct": "" if sl is None else f"{sl:.1f}",
            "average_wait_s": f"{self.average_wait:.1f}",
            "average_talk_s": f"{self.average_talk:.1f}",
        }


@dataclass
class CallReport:
    start: datetime
    end: datetime
    total: Figures = field(default_factory=lambda: Figures("all"))
    by_queue: list[Figures] = field(default_factory=list)
    by_agent: list[Figures] = field(default_factory=list)
    by_hour: list[Figures] = field(default_factory=list)
    by_disposition: list[Figures] = field(default_factory=list)

    @staticmethod
    def busiest(rows: list[Figures]) -> int:
        """The most calls offered in one row of `rows` (at least 1): the scale of that dimension's bar chart.
        Computed here because Quart renders templates asynchronously, where `map` yields an async generator that
        Jinja's `max` filter cannot read."""
        return max((figures.offered for figures in rows), default=0) or 1

    def csv_rows(self) -> Iterator[dict[str, str]]:
        yield self.total.as_row("total")
        for dimension, rows in (
            ("queue", self.by_queue),
            ("agent", self.by_agent),
            ("hour", self.by_hour),
            ("disposition", self.by_disposition),
        ):
            for figures in rows:
                yield figures.as_row(dimension)


CSV_COLUMNS = [
    "dimension",
    "key",
    "offered",
    "answered",
    "abandoned",
    "service_level_pct",
    "average_wait_s",
    "average_talk_s",
]


def check_range(start: datetime, end: datetime) -> None:
    if end <= start:
        raise ValidationFailed("The report's end must come after its start.", field="end")
    if end - start > timedelta(days=MAX_DAYS):
        raise ValidationFailed(f"A report covers at most {MAX_DAYS} days.", field="end")


async def call_report(
    *,
    session: AsyncSession,
    actor: Actor,
    start: datetime,
    end: datetime,
    queue: str | None = None,
    agent: str | None = None,
    service_level_seconds: int = 20,
) -> CallReport:
    """Calls offered in [start, end) (UTC), grouped four ways. Supervisors and admins only."""
    require_role(actor, Role.SUPERVISOR)
    check_range(start, end)
    query = select(CallLog).where(CallLog.offered_at >= start, CallLog.offered_at < end, _OFFERED_TO_THE_CENTER)
    if queue:
        query = query.where(CallLog.queue == queue)
    if agent:
        query = query.where(CallLog.agent == agent)
    groups: dict[str, dict[str, Figures]] = {name: {} for name in ("queue", "agent", "hour", "disposition")}
    report = CallReport(start=start, end=end)
    keys: dict[str, Callable[[CallLog], str]] = {
        "queue": lambda c: c.queue or "(no queue)",
        "agent": lambda c: c.agent or "(nobody)",
        "hour": lambda c: f"{c.offered_at.astimezone(UTC).hour:02d}:00",
        "disposition": lambda c: c.disposition_code or "(none)",
    }
    result = await session.stream_scalars(query.execution_options(yield_per=2000))
    async for call in result:
        report.total.add(call, service_level_seconds)
        for name, key_of in keys.items():
            key = key_of(call)
            figures = groups[name].get(key)
            if figures is None:
                figures = groups[name][key] = Figures(key)
            figures.add(call, service_level_seconds)
    report.by_queue = sorted(groups["queue"].values(), key=lambda f: f.key)
    report.by_agent = sorted(groups["agent"].values(), key=lambda f: f.key)
    report.by_hour = sorted(groups["hour"].values(), key=lambda f: f.key)
    report.by_disposition = sorted(groups["disposition"].values(), key=lambda f: -f.offered)
    return report


async def calls_per_interval(
    *, session: AsyncSession, actor: Actor, since: datetime, until: datetime, minutes: int = 30
) -> list[dict[str, object]]:
    """Offered/answered/abandoned per interval of `minutes` (the wallboard's chart of today)."""
    require_role(actor, Role.SUPERVISOR)
    check_range(since, until)
    buckets: dict[int, dict[str, int]] = defaultdict(lambda: {"offered": 0, "answered": 0, "abandoned": 0})
    rows = await session.execute(
        select(CallLog.offered_at, CallLog.outcome).where(
            CallLog.offered_at >= since, CallLog.offered_at < until, _OFFERED_TO_THE_CENTER
        )
    )
    width = minutes * 60
    for offered_at, outcome in rows:
        index = int((offered_at - since).total_seconds() // width)
        buckets[index]["offered"] += 1
        if outcome in ("answered", "abandoned"):
            buckets[index][outcome] += 1
    count = int((until - since).total_seconds() // width) + 1
    return [
        {
            "start": (since + timedelta(seconds=i * width)).isoformat(),
            **buckets.get(i, {"offered": 0, "answered": 0, "abandoned": 0}),
        }
        for i in range(count)
    ]
