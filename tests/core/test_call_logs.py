"""Call logs written from the bridge's events of recorded traces, on SQLite and PostgreSQL: idempotent, one log per
transferred call with its legs, calls closed at resync; wrap-up, survey and history rules."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from crm_core.calls.events import CallAnswered, CallDirection, CallEnded, CallOffered, CallsResynced, CallWrappedUp
from crm_core.calls.models import CallLeg, CallLog, Disposition
from crm_core.calls.service import apply_call_event, last_calls_of, record_survey, wrap_up
from crm_core.calls.writer import CallLogWriter
from crm_core.db import make_sessionmaker, unit_of_work
from crm_core.errors import PermissionDenied, ValidationFailed
from crm_core.users.models import Role
from tests.core.helpers import make_actor, make_customer
from tests.cti.conftest import start_harness, trace


async def bridge_events(name: str) -> list[object]:
    """The domain events the real bridge publishes for a recorded trace (replayed over TCP)."""
    harness = await start_harness(logged_in=False)
    try:
        await harness.pbx.replay(trace(name))
        await harness.settle()
        return [e for e in harness.bus.events if isinstance(e, CallOffered | CallAnswered | CallEnded)]
    finally:
        await harness.bridge.stop()
        await harness.pbx.stop()


async def write_all(engine: AsyncEngine, events: list[object]) -> None:
    writer = CallLogWriter(make_sessionmaker(engine), region="US")
    for event in events:
        writer.receive(event)  # type: ignore[arg-type]
    await writer.drain()
    assert not writer.failed


async def forget(engine: AsyncEngine, *linkedids: str) -> None:
    async with unit_of_work(make_sessionmaker(engine)) as session:
        await session.execute(delete(CallLog).where(CallLog.linkedid.in_(linkedids)))


async def test_transferred_call_is_one_log_with_its_legs_and_replays_change_nothing(engine: AsyncEngine) -> None:
    events = await bridge_events("transfer_blind")
    [ended] = [e for e in events if isinstance(e, CallEnded)]
    sessions = make_sessionmaker(engine)
    async with unit_of_work(sessions) as session:  # the caller is a known customer
        alice = await make_customer(session, "Alice Transfer", ended.caller_number)
    try:
        await write_all(engine, events)
        await write_all(engine, events)  # the same events again: a replay after a crash, say
        async with sessions() as session:
            [call] = (await session.scalars(select(CallLog).where(CallLog.linkedid == ended.linkedid))).all()
            assert call.transferred and call.outcome == "answered" and call.agent == "2001" and call.queue == "sales"
            assert call.customer_id == alice.id and call.recording_ref and call.ivr_vars["CRM_QUEUE"] == "support"
            legs = [(leg.agent, leg.answered_at is not None) for leg in call.legs]
            assert legs == [(leg.agent, leg.answered_at is not None) for leg in ended.legs]
            assert ("1001", True) in legs and ("2001", True) in legs and ("1002", False) in legs
            assert await session.scalar(
                select(func.count()).select_from(CallLeg).where(CallLeg.call_id == call.id)
            ) == len(ended.legs)
            assert [c.id for c in await last_calls_of(session=session, customer_id=alice.id)] == [call.id]
    finally:
        await forget(engine, ended.linkedid)
        async with unit_of_work(sessions) as session:
            await session.delete(await session.merge(alice))


async def test_abandoned_and_outbound_calls(engine: AsyncEngine) -> None:
    abandoned = await bridge_events("inbound_abandoned")
    outbound = await bridge_events("click_to_dial")
    try:
        await write_all(engine, abandoned + outbound)
        async with make_sessionmaker(engine)() as session:
            rows = {
                c.direction: c
                for c in await session.scalars(
                    select(CallLog).where(
                        CallLog.linkedid.in_([e.linkedid for e in abandoned + outbound if isinstance(e, CallEnded)])
                    )
                )
            }
        assert rows["inbound"].outcome == "abandoned" and rows["inbound"].wait_seconds == 22.0
        assert rows["outbound"].outcome == "answered" and rows["outbound"].callee_number == "15559870000"
    finally:
        await forget(engine, *[e.linkedid for e in abandoned + outbound if isinstance(e, CallEnded)])


async def test_open_calls_the_pbx_no_longer_has_are_closed_at_resync(engine: AsyncEngine) -> None:
    events = await bridge_events("inbound_queue_answered")
    before_end = [e for e in events if not isinstance(e, CallEnded)]  # the bridge went blind before the hangup
    linkedid = before_end[0].linkedid  # type: ignore[attr-defined]
    try:
        await write_all(engine, before_end)
        later = datetime.now(UTC)
        await write_all(engine, [CallsResynced(live_linkedids=("someone-else.1",), resynced_at=later)])
        async with make_sessionmaker(engine)() as session:
            call = await session.scalar(select(CallLog).where(CallLog.linkedid == linkedid))
            assert call is not None and call.closed_at_resync and call.ended_at == later
            assert call.outcome == "answered" and call.agent == "1001"
    finally:
        await forget(engine, linkedid)


async def test_two_writers_racing_on_one_call_make_one_row(engine: AsyncEngine) -> None:
    events = await bridge_events("inbound_queue_answered")
    [ended] = [e for e in events if isinstance(e, CallEnded)]
    try:
        # two processes (say, two bridges during a failover) write the same call at once
        await asyncio.gather(write_all(engine, events), write_all(engine, events))
        async with make_sessionmaker(engine)() as session:
            count = await session.scalar(
                select(func.count()).select_from(CallLog).where(CallLog.linkedid == ended.linkedid)
            )
            assert count == 1
    finally:
        await forget(engine, ended.linkedid)


async def test_wrap_up_rules(session: AsyncSession) -> None:
    await session.merge(Disposition(code="sale", label="Sale"))
    session.add(Disposition(code="old", label="Retired", active=False))
    call = CallLog(linkedid="wrap.1", direction="inbound", agent="1001", offered_at=datetime.now(UTC))
    session.add(call)
    await session.flush()
    owner = await make_actor(session, Role.AGENT, "agent-a", extension="1001")
    other = await make_actor(session, Role.AGENT, "agent-b", extension="1002")
    supervisor = await make_actor(session, Role.SUPERVISOR, "boss")
    marketer = await make_actor(session, Role.MARKETER, "mkt")
    with pytest.raises(PermissionDenied):
        await wrap_up(session=session, actor=other, linkedid="wrap.1", disposition_code="sale")
    with pytest.raises(PermissionDenied):
        await wrap_up(session=session, actor=marketer, linkedid="wrap.1", disposition_code="sale")
    with pytest.raises(ValidationFailed, match="disposition"):
        await wrap_up(session=session, actor=owner, linkedid="wrap.1", disposition_code="old")
    done = await wrap_up(session=session, actor=owner, linkedid="wrap.1", disposition_code="sale", notes=" Upsold ")
    assert (done.disposition_code, done.notes, done.wrapped_up_by) == ("sale", "Upsold", "1001")
    [event] = [e for e in session.info["crm_pending_events"] if isinstance(e, CallWrappedUp)]
    assert event.linkedid == "wrap.1" and event.agent == "1001"
    again = await wrap_up(session=session, actor=supervisor, linkedid="wrap.1", disposition_code="sale")
    assert again.notes == "Upsold"


async def test_survey_scores(session: AsyncSession) -> None:
    for bad in (0, 6, -1):
        with pytest.raises(ValidationFailed):
            await record_survey(session=session, linkedid="survey.1", score=bad)
    call = await record_survey(session=session, linkedid="survey.1", score=4)
    assert call.survey_score == 4


async def test_events_apply_directly_in_a_transaction(session: AsyncSession) -> None:
    offered = CallOffered(
        linkedid="direct.1",
        direction=CallDirection.INBOUND,
        caller_number="+15550001111",  # type: ignore[arg-type]
        caller_name="X",
        callee_number="100",
        queue="support",
        position=1,
        offered_at=datetime.now(UTC),
    )
    call_id = await apply_call_event(session=session, event=offered, region="US")
    call = await session.get(CallLog, call_id)
    assert call is not None and call.queue == "support" and call.ended_at is None
    assert await apply_call_event(session=session, event=offered, region="US") == call_id  # a replay: same row
