"""Service-desk reports on SQLite and PostgreSQL: SLA compliance by team, priority, clock and day from the clocks'
stored outcomes, the backlog by age, first-contact resolution, average times, CSAT, and a formula-safe CSV."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.calls.models import CallLog
from crm_core.csv_safety import safe_row
from crm_core.errors import PermissionDenied, ValidationFailed
from crm_core.sla.service import create_policy
from crm_core.tickets.csat import record_ivr_score
from crm_core.tickets.models import TicketLink
from crm_core.tickets.reports import ticket_report
from crm_core.tickets.service import add_message, create_ticket, update_ticket
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, Actor

# far from today, so that nothing else a test run leaves in the database falls in the report's days
NOW = datetime(2031, 3, 10, 12, 0, tzinfo=UTC)
FORMULA_TEAM = '=HYPERLINK("http://x.example","y")'


async def test_the_report_counts_outcomes_backlog_resolution_and_times(session: AsyncSession) -> None:
    start, end = NOW - timedelta(days=1), NOW + timedelta(hours=1)
    before = await ticket_report(session=session, actor=SYSTEM, start=start, end=end, now=NOW)
    await create_policy(session=session, actor=SYSTEM, name="Std", first_response_minutes=60, resolution_minutes=600)
    # met both: first reply after 30 min, resolved after 1 h, one reply (first contact)
    quick = await create_ticket(
        session=session, actor=SYSTEM, subject="Quick", team="support", priority="high", now=NOW - timedelta(hours=5)
    )
    await add_message(session=session, actor=SYSTEM, ticket_id=quick.id, body="Fixed", now=NOW - timedelta(hours=4.5))
    await update_ticket(
        session=session, actor=SYSTEM, ticket_id=quick.id, status="resolved", now=NOW - timedelta(hours=4)
    )
    # first response breached (3 h), resolution met (9 h of 10), two replies
    slow = await create_ticket(
        session=session, actor=SYSTEM, subject="Slow", team=FORMULA_TEAM, now=NOW - timedelta(hours=10)
    )
    await add_message(session=session, actor=SYSTEM, ticket_id=slow.id, body="Looking", now=NOW - timedelta(hours=7))
    await add_message(session=session, actor=SYSTEM, ticket_id=slow.id, body="Done", now=NOW - timedelta(hours=6))
    await update_ticket(
        session=session, actor=SYSTEM, ticket_id=slow.id, status="resolved", now=NOW - timedelta(hours=1)
    )
    # the backlog: one a month old, one two hours old
    await create_ticket(session=session, actor=SYSTEM, subject="Old", now=NOW - timedelta(days=40))
    await create_ticket(session=session, actor=SYSTEM, subject="New", now=NOW - timedelta(hours=2))
    call = CallLog(
        linkedid="report.1",
        direction="inbound",
        answered_at=NOW - timedelta(hours=5),
        talk_seconds=100,
        hold_seconds=20,
    )
    session.add(call)
    await session.flush()
    session.add(TicketLink(ticket_id=quick.id, call_id=call.id))
    await session.flush()
    # the caller of the linked call scored the resolution 4 in the IVR survey; the slow ticket's customer never answered
    await record_ivr_score(session=session, call=call, score=4, now=NOW - timedelta(hours=3))

    report = await ticket_report(session=session, actor=SYSTEM, start=start, end=end, now=NOW)
    teams = {c.key: (c.met, c.breached) for c in report.by_team}
    assert teams == {"support": (2, 0), FORMULA_TEAM: (1, 1)}
    assert {c.key: (c.met, c.breached) for c in report.by_priority} == {"high": (2, 0), "normal": (1, 1)}
    assert {c.key: (c.met, c.breached) for c in report.by_clock} == {"first_response": (1, 1), "resolution": (2, 0)}
    assert [(str(c.key), c.met, c.breached) for c in report.by_day] == [("2031-03-10", 3, 1)]
    assert report.total.pct == 75.0
    grew = {label: n - dict(before.backlog)[label] for label, n in report.backlog}
    assert grew == {"under 1 day": 1, "1–3 days": 0, "3–7 days": 0, "7–30 days": 0, "30+ days": 1}
    assert (report.resolved, report.first_contact_resolved, report.fcr_pct) == (2, 1, 50.0)
    assert report.average_first_response_minutes == 105.0  # 30 and 180
    assert report.average_resolution_hours == 5.0  # 1 and 9
    assert report.average_handle_seconds == 120.0
    assert before.csat.responses == 0
    assert (report.csat.responses, report.csat.average, report.csat.by_score) == (1, 4.0, {4: 1})
    rows = [safe_row(row) for row in report.csv_rows()]
    cells = [row["key"] for row in rows if row["section"] == "sla_by_team"]
    assert cells == ["'" + FORMULA_TEAM, "support"]


async def test_only_supervisors_and_a_sane_period(session: AsyncSession) -> None:
    agent = Actor(user_id=None, role=Role.AGENT)
    with pytest.raises(PermissionDenied):
        await ticket_report(session=session, actor=agent, start=NOW - timedelta(days=1), end=NOW, now=NOW)
    with pytest.raises(ValidationFailed):
        await ticket_report(session=session, actor=SYSTEM, start=NOW, end=NOW - timedelta(days=1), now=NOW)
    with pytest.raises(ValidationFailed):
        await ticket_report(session=session, actor=SYSTEM, start=NOW - timedelta(days=400), end=NOW, now=NOW)
