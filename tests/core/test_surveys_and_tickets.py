"""Right figures and right words: a Twilio survey is no abandoned call, a ticket for a customer who does not exist
says so (on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.calls.events import CallDirection, CallOffered, CallsResynced
from crm_core.calls.models import CallLog
from crm_core.calls.reports import call_report
from crm_core.calls.service import SURVEY_ONLY, apply_call_event, record_survey
from crm_core.errors import NotFound, ValidationFailed
from crm_core.tickets.models import Ticket
from crm_core.tickets.service import create_ticket, update_ticket
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM
from tests.core.helpers import make_actor, make_customer

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


async def resync(session: AsyncSession, *live: str, at: datetime = NOW) -> None:
    await apply_call_event(session=session, event=CallsResynced(live_linkedids=live, resynced_at=at), region="US")


async def log_of(session: AsyncSession, linkedid: str) -> CallLog:
    call = await session.scalar(
        select(CallLog).where(CallLog.linkedid == linkedid).execution_options(populate_existing=True)
    )
    assert call is not None
    return call


async def test_a_twilio_survey_is_closed_at_once_and_a_resync_leaves_it_so(session: AsyncSession) -> None:
    when = NOW - timedelta(minutes=5)
    await record_survey(session=session, linkedid="CA-twilio-1", score=2, outside_pbx=True, at=when)
    call = await log_of(session, "CA-twilio-1")
    assert (call.survey_score, call.outcome, call.ended_at, call.offered_at) == (2, SURVEY_ONLY, when, when)
    # a caller who hung up in the queue while the bridge was blind, for comparison
    await apply_call_event(
        session=session,
        event=CallOffered(
            linkedid="1700000100.1",
            direction=CallDirection.INBOUND,
            caller_number="+15557770000",  # type: ignore[arg-type]
            caller_name="",
            callee_number="100",
            queue="support",
            position=1,
            offered_at=when,
        ),
        region="US",
    )
    await resync(session)
    survey = await log_of(session, "CA-twilio-1")
    assert (survey.outcome, survey.closed_at_resync, survey.ended_at) == (SURVEY_ONLY, False, when)
    lost = await log_of(session, "1700000100.1")
    assert (lost.outcome, lost.closed_at_resync) == ("abandoned", True)
    # the report counts the lost caller, not the survey
    supervisor = await make_actor(session, Role.SUPERVISOR)
    report = await call_report(session=session, actor=supervisor, start=NOW - timedelta(hours=1), end=NOW)
    assert (report.total.offered, report.total.abandoned) == (1, 1)
    assert [f.key for f in report.by_queue] == ["support"]
    # a second key press on the same Twilio call only changes the score
    await record_survey(session=session, linkedid="CA-twilio-1", score=4, outside_pbx=True, at=NOW)
    again = await log_of(session, "CA-twilio-1")
    assert (again.survey_score, again.outcome, again.ended_at) == (4, SURVEY_ONLY, when)


async def test_a_survey_only_row_left_open_is_closed_as_survey_only_not_abandoned(session: AsyncSession) -> None:
    # as earlier versions wrote a Twilio survey, and as an AGI survey heard before the PBX's events looks
    await record_survey(session=session, linkedid="CA-old-1", score=5)
    await record_survey(session=session, linkedid="1700000200.1", score=3)
    assert (await log_of(session, "CA-old-1")).ended_at is None
    now = datetime.now(UTC)
    await resync(session, "1700000200.1", at=now)  # the AGI call is still alive at the PBX
    old = await log_of(session, "CA-old-1")
    assert (old.outcome, old.closed_at_resync, old.ended_at) == (SURVEY_ONLY, True, now)
    live = await log_of(session, "1700000200.1")
    assert (live.outcome, live.ended_at, live.survey_score) == (None, None, 3)


async def test_a_ticket_for_an_unknown_customer_names_the_customer(session: AsyncSession) -> None:
    agent = await make_actor(session, Role.AGENT, extension="1001")
    before = await session.scalar(select(Ticket.id).where(Ticket.subject == "No dial tone"))
    assert before is None
    with pytest.raises(NotFound) as refused:
        await create_ticket(session=session, actor=agent, subject="No dial tone", customer_id="f" * 32)
    assert refused.value.message == f"There is no customer {'f' * 32}."
    assert refused.value.details["field"] == "customer_id" and refused.value.http_status == 404
    with pytest.raises(NotFound, match="There is no user"):
        await create_ticket(session=session, actor=agent, subject="No dial tone", assignee_id="e" * 32)
    assert await session.scalar(select(Ticket.id).where(Ticket.subject == "No dial tone")) is None
    customer = await make_customer(session, "Ticket Customer", "+15551230111")
    ticket = await create_ticket(session=session, actor=agent, subject="No dial tone", customer_id=customer.id)
    assert ticket.customer_id == customer.id and ticket.number >= 1001
    with pytest.raises(NotFound, match="There is no user"):
        await update_ticket(session=session, actor=agent, ticket_id=ticket.id, assignee_id="e" * 32)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"subject": "x" * 201}, "subject", "subject is longer than 200 characters."),
        ({"subject": "Line\x00break"}, "subject", "subject must not contain control characters (U+0000)."),
        ({"subject": "Two\nlines"}, "subject", "subject must not contain control characters (U+000A)."),
        ({"subject": "   "}, "subject", "subject cannot be empty."),
        ({"subject": "ok", "description": "a\x00b"}, "description", "description must not contain control characters"),
        ({"subject": "ok", "description": "x" * 10_001}, "description", "description is longer than 10000"),
        ({"subject": "ok", "category": "c" * 65}, "category", "category is longer than 64 characters."),
        ({"subject": "ok", "customer_id": ["a"]}, "customer_id", "customer_id must be text."),
        ({"subject": "ok", "priority": "asap"}, "priority", "Priority must be one of low, normal, high, urgent."),
    ],
)
async def test_ticket_fields_are_checked_against_the_table(
    session: AsyncSession, fields: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        await create_ticket(session=session, actor=SYSTEM, **fields)  # type: ignore[arg-type]
    assert refused.value.message.startswith(message) and refused.value.details["field"] == field
    ticket = await create_ticket(session=session, actor=SYSTEM, subject="ok", description="Line one\n\tLine two\r\n")
    assert ticket.description == "Line one\n\tLine two\r\n"
