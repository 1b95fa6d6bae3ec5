"""Satisfaction after resolution on real SQLite and PostgreSQL: one request per resolution, sent by SMS through the
outbox when it can be (and why not when it cannot), the customer's reply 1-5 through the inbound SMS path or the
IVR survey of a linked call stored on the ticket — once, whichever comes first; switched off by a setting."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core import migrate
from crm_core.calls.events import CallDirection, CallOffered
from crm_core.calls.models import CallLog
from crm_core.calls.service import apply_call_event
from crm_core.db import make_engine, make_sessionmaker, unit_of_work
from crm_core.sms.models import SmsConversation, SmsMessage
from crm_core.sms.service import record_consent
from crm_core.tickets.csat import CsatDispatcher, CsatPolicy, dispatch_due, parse_score, record_survey_on_tickets
from crm_core.tickets.csat_models import TicketCsat
from crm_core.tickets.service import create_ticket, update_ticket
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM
from sms_gateway.inbound import receive_sms
from tests.core.helpers import make_actor, make_customer
from tests.desktop.app_client import database_of_its_own

SENDER = "+15550000100"
ALICE = "+15557010001"  # a number no other test of the run gives a customer (the PG database is shared)
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)  # the inbound path stamps real time
POLICY = CsatPolicy(enabled=True, sms_sender=SENDER, delay=timedelta(minutes=10))


async def _resolved_ticket(session: AsyncSession, *phones: str, at: datetime = T0):  # type: ignore[no-untyped-def]
    agent = await make_actor(session, Role.AGENT, "agent", "1001")
    alice = await make_customer(session, "Alice Example", *phones)
    ticket = await create_ticket(session=session, actor=agent, subject="No signal", customer_id=alice.id, now=at)
    await update_ticket(session=session, actor=agent, ticket_id=ticket.id, status="resolved", now=at)
    return agent, ticket


async def _rows(session: AsyncSession, ticket_id: str) -> list[TicketCsat]:
    return list(
        await session.scalars(
            select(TicketCsat)
            .where(TicketCsat.ticket_id == ticket_id)
            .order_by(TicketCsat.resolved_at)
            .execution_options(populate_existing=True)
        )
    )


async def _text_in(session: AsyncSession, body: str, sid: str, *, number: str = ALICE) -> None:
    params = {"MessageSid": sid, "From": number, "To": SENDER, "Body": body}
    await receive_sms(session=session, params=params, region="US", queue="support", help_text="")


async def test_request_by_sms_after_the_delay_and_the_reply_is_the_score(session: AsyncSession) -> None:
    _agent, ticket = await _resolved_ticket(session, ALICE)
    [row] = await _rows(session, ticket.id)
    assert (row.status, row.resolved_at) == ("pending", T0)
    assert await dispatch_due(session=session, policy=POLICY, now=T0 + timedelta(minutes=9)) == []  # not yet
    [sent] = await dispatch_due(session=session, policy=POLICY, now=T0 + timedelta(minutes=10))
    assert (sent.status, sent.number) == ("sent", ALICE)
    sms = await session.get(SmsMessage, sent.sms_id)
    assert sms is not None and (sms.status, sms.to_number, sms.from_number) == ("queued", ALICE, SENDER)
    assert f"ticket {ticket.number}" in sms.body
    assert await dispatch_due(session=session, policy=POLICY, now=T0 + timedelta(hours=1)) == []  # sent once

    await _text_in(session, "Thanks a lot", "SM-1")  # an ordinary message is no score
    assert (await _rows(session, ticket.id))[0].status == "sent"
    await _text_in(session, " 4 stars! ", "SM-2")
    conversation = await session.scalar(select(SmsConversation).where(SmsConversation.number == ALICE))
    assert conversation is not None and conversation.unread == 1  # the score is no message for an agent
    [answered] = await _rows(session, ticket.id)
    assert (answered.status, answered.score, answered.channel) == ("answered", 4, "sms")
    assert answered.answered_at is not None
    await _text_in(session, "1", "SM-3")  # once per resolution: a second digit changes nothing
    assert [(r.score, r.channel) for r in await _rows(session, ticket.id)] == [(4, "sms")]


async def test_each_resolution_asks_once_and_a_quick_reopen_cancels(session: AsyncSession) -> None:
    agent, ticket = await _resolved_ticket(session, ALICE)
    await update_ticket(session=session, actor=agent, ticket_id=ticket.id, status="open", now=T0 + timedelta(minutes=2))
    [cancelled] = await dispatch_due(session=session, policy=POLICY, now=T0 + timedelta(minutes=20))
    assert cancelled.status == "cancelled"
    second = T0 + timedelta(hours=1)
    await update_ticket(session=session, actor=agent, ticket_id=ticket.id, status="resolved", now=second)
    await update_ticket(session=session, actor=agent, ticket_id=ticket.id, status="closed", now=second)  # same one
    rows = await _rows(session, ticket.id)
    assert [(r.resolved_at, r.status) for r in rows] == [(T0, "cancelled"), (second, "pending")]
    [sent] = await dispatch_due(session=session, policy=POLICY, now=second + timedelta(minutes=10))
    assert sent.status == "sent"
    assert await session.scalar(select(func.count()).select_from(SmsMessage)) == 1


@pytest.mark.parametrize(
    ("phones", "opted_out", "policy", "status", "reason"),
    [
        ((), False, POLICY, "unsent", "The customer has no mobile number."),
        ((ALICE,), True, POLICY, "unsent", "The customer opted out of SMS."),
        ((ALICE,), False, CsatPolicy(sms_sender=None, delay=timedelta(0)), "unsent", "No SMS sender is configured."),
        ((ALICE,), False, CsatPolicy(enabled=False, sms_sender=SENDER), "off", "CSAT requests are switched off."),
    ],
)
async def test_no_sms_and_why(
    session: AsyncSession,
    phones: tuple[str, ...],
    opted_out: bool,
    policy: CsatPolicy,
    status: str,
    reason: str,
) -> None:
    _agent, ticket = await _resolved_ticket(session, *phones)
    if opted_out:
        await record_consent(session=session, number=ALICE, opted_out=True, source="keyword", detail="STOP")
    [row] = await dispatch_due(session=session, policy=policy, now=T0 + timedelta(days=1))
    assert (row.status, row.reason) == (status, reason)
    assert (
        await session.scalar(select(func.count()).select_from(SmsMessage).where(SmsMessage.direction == "outbound"))
        == 0
    )
    await _text_in(session, "5", "SM-9")  # a digit without a request is an ordinary message
    assert (await _rows(session, ticket.id))[0].score is None


async def test_the_ivr_survey_of_a_linked_call_is_the_tickets_score(session: AsyncSession) -> None:
    alice = await make_customer(session, "Alice Example", ALICE)
    await apply_call_event(
        session=session,
        event=CallOffered(
            linkedid="1700000200.1",
            direction=CallDirection.INBOUND,
            caller_number=ALICE,  # type: ignore[arg-type]
            caller_name="",
            callee_number="100",
            queue="support",
            position=1,
            offered_at=T0,
        ),
        region="US",
    )
    call = await session.scalar(select(CallLog).where(CallLog.linkedid == "1700000200.1"))
    assert call is not None
    ticket = await create_ticket(
        session=session, actor=SYSTEM, subject="Fixed on the call", customer_id=alice.id, call_id=call.id
    )
    unrelated = await create_ticket(session=session, actor=SYSTEM, subject="Other", customer_id=alice.id)
    # open while the caller rates: the score stays on the call only
    await record_survey_on_tickets(session=session, linkedid="1700000200.1", score=2, at=T0)
    assert await _rows(session, ticket.id) == []
    await update_ticket(session=session, actor=SYSTEM, ticket_id=ticket.id, status="resolved", now=T0)
    await update_ticket(session=session, actor=SYSTEM, ticket_id=unrelated.id, status="resolved", now=T0)
    at = T0 + timedelta(minutes=1)
    await record_survey_on_tickets(session=session, linkedid="1700000200.1", score=5, at=at)
    [row] = await _rows(session, ticket.id)
    assert (row.status, row.score, row.channel, row.call_id, row.answered_at) == ("answered", 5, "ivr", call.id, at)
    assert call.survey_score == 5
    assert (await _rows(session, unrelated.id))[0].status == "pending"
    # the SMS request is not sent any more for an answered resolution, and a later SMS digit changes nothing
    assert [r.ticket_id for r in await dispatch_due(session=session, policy=POLICY, now=T0 + timedelta(hours=1))] == [
        unrelated.id
    ]
    await record_survey_on_tickets(session=session, linkedid="1700000200.1", score=1, at=T0 + timedelta(minutes=2))
    assert (await _rows(session, ticket.id))[0].score == 5


@given(st.text(max_size=12))
def test_any_text_is_a_score_only_when_it_is_one_digit_from_1_to_5(body: str) -> None:
    score = parse_score(body)
    digits = [c for c in body if c.isdigit()]
    if score is not None:
        assert 1 <= score <= 5 and digits[0] == str(score) and digits in ([str(score)], [str(score), "5"])
        assert not any(c.isalpha() for c in body.lower().replace("stars", "").replace("star", ""))


@given(
    st.integers(min_value=1, max_value=5),
    st.sampled_from(["", " ", "  "]),
    st.sampled_from(["", " stars", "star", "/5", " / 5"]),
    st.sampled_from(["", "!", ".", "!!"]),
)
def test_a_digit_with_padding_and_a_suffix_is_its_score(digit: int, pad: str, suffix: str, mark: str) -> None:
    assert parse_score(f"{pad}{digit}{suffix}{mark}{pad}") == digit


def test_score_examples() -> None:
    assert [parse_score(b) for b in ("5", " 4 ", "3!", "2 stars", "1/5", "5.")] == [5, 4, 3, 2, 1, 5]
    assert [parse_score(b) for b in ("0", "6", "45", "5 but slow", "five", "", "STOP")] == [None] * 7


@pytest.mark.postgres
async def test_two_dispatchers_on_postgresql_send_each_request_once(tmp_path: Path) -> None:
    """Two processes' dispatchers (an engine each) drain 30 requests at the same time: 30 SMS, none twice."""
    async with database_of_its_own("postgres", tmp_path) as url:
        engines = [make_engine(url, pool_size=2), make_engine(url, pool_size=2)]
        try:
            await migrate.upgrade(engines[0])
            async with unit_of_work(make_sessionmaker(engines[0])) as db:
                agent = await make_actor(db, Role.AGENT, "agent", "1001")
                for i in range(30):
                    customer = await make_customer(db, f"Customer {i}", f"+1555123{i:04d}")
                    ticket = await create_ticket(session=db, actor=agent, subject=f"T{i}", customer_id=customer.id)
                    await update_ticket(session=db, actor=agent, ticket_id=ticket.id, status="resolved", now=T0)
            policy = CsatPolicy(enabled=True, sms_sender=SENDER, delay=timedelta(0))
            dispatchers = [CsatDispatcher(make_sessionmaker(e), policy, batch=4) for e in engines]

            async def drain(dispatcher: CsatDispatcher) -> list[str]:
                handled: list[str] = []
                while rows := await dispatcher.run_once():
                    handled += [r.id for r in rows]
                return handled

            first, second = await asyncio.gather(*(drain(d) for d in dispatchers))
            assert len(first) + len(second) == 30 and not set(first) & set(second)
            assert first and second  # both took part
            async with make_sessionmaker(engines[0])() as db:
                sent = list(await db.scalars(select(SmsMessage.to_number)))
                statuses = list(await db.scalars(select(TicketCsat.status)))
            assert len(sent) == len(set(sent)) == 30 and statuses == ["sent"] * 30
        finally:
            for engine in engines:
                await engine.dispose()
