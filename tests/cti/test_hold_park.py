"""Hold by Park and resume by originating the agent into the parking space: the recorded Asterisk 22 trace
replayed, the same through the bridge's own commands against the demo PBX, and the call log that results."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_core.calls.events import (
    AgentState,
    AgentStateChanged,
    CallAnswered,
    CallEnded,
    CallHeld,
    CallOffered,
    CallResumed,
)
from crm_core.calls.models import CallLeg, CallLog
from crm_core.calls.writer import HANDLED, CallLogWriter
from crm_core.db import make_sessionmaker
from cti_bridge.adapter import CallState, Capability, CommandError, CommandErrorCode
from cti_bridge.demo_pbx import DemoPbx
from tests.cti.conftest import start_harness, trace
from tests.cti.helpers import SECRET, Harness, WatchedBus, make_bridge


def states(harness: Harness, agent: str) -> list[AgentState]:
    return [e.state for e in harness.bus.of(AgentStateChanged, agent=agent)]


async def test_the_recorded_hold_by_park_is_one_call_with_its_hold(replay_harness: Harness) -> None:
    harness = replay_harness
    harness.pbx.time_scale = 0.02  # paced: the hold lasts (4 s recorded)
    await harness.pbx.replay(trace("hold_park"), paced=True)
    await harness.settle()
    bus = harness.bus
    [offered] = bus.of(CallOffered)
    [held] = bus.of(CallHeld)
    [resumed] = bus.of(CallResumed)
    assert held.linkedid == resumed.linkedid == offered.linkedid and held.agent == "1001"
    # the pickup (an Originate with a Linkedid of its own) is no second call
    [ended] = bus.of(CallEnded)
    assert ended.linkedid == offered.linkedid and ended.agent == "1001" and ended.outcome.value == "answered"
    assert 0 < ended.hold_seconds < (ended.ended_at - ended.offered_at).total_seconds()
    assert [leg.agent for leg in ended.legs if leg.answered_at] == ["1001"]
    [leg] = [leg for leg in ended.legs if leg.answered_at]
    assert leg.channel == "Local/1001@agents-00000010;1"  # the leg goes on on the channel that picked it up
    # on hold the agent still has the call: no wrap-up, no "available" between hold and pickup. (A pickup nobody
    # announced shows the agent's device ringing first; the bridge's own resume announces it, see below.)
    changes = bus.of(AgentStateChanged, agent="1001")
    assert [c.state for c in changes][-1] is AgentState.AVAILABLE
    assert {c.state for c in changes[:-1]} == {AgentState.RINGING, AgentState.ON_CALL}
    assert changes[-2].state is AgentState.ON_CALL and changes[-2].linkedid == offered.linkedid


async def test_hold_and_resume_from_the_bridge_against_the_demo_pbx(harness: Harness) -> None:
    pbx, bus, bridge = harness.pbx, harness.bus, harness.bridge
    linkedid = await pbx.place_inbound_call(
        "+15551230007", "Grace Example", "support", agent="1001", answer_after_s=0.5, talk_s=1000.0
    )
    await bus.wait_for(CallAnswered, lambda e: e.linkedid == linkedid)
    with pytest.raises(CommandError) as not_held:
        await bridge.resume(linkedid, "1001")
    assert not_held.value.code is CommandErrorCode.INVALID
    await bridge.hold(linkedid, "1001")
    park = [a for a in pbx.actions_received if a.get("Action") == "Park"][-1]
    assert park["Channel"].startswith("Local/18005550100@from-pstn-") and park["Channel"].endswith(";2")
    assert park["TimeoutChannel"].startswith("Local/1001@agents-") and park["Timeout"] == "60000"
    await bus.wait_for(CallHeld, lambda e: e.linkedid == linkedid)
    await harness.settle()
    [call] = [c for c in bridge.snapshot().calls if c.linkedid == linkedid]
    assert call.state is CallState.HELD and call.agent == "1001"
    with pytest.raises(CommandError) as twice:
        await bridge.hold(linkedid, "1001")
    assert twice.value.code is CommandErrorCode.INVALID
    await bridge.resume(linkedid, "1001")
    pickup = [a for a in pbx.actions_received if a.get("Action") == "Originate"][-1]
    assert (pickup["Channel"], pickup["Context"], pickup["Exten"]) == ("Local/1001@agents", "parkedcalls", "701")
    await bus.wait_for(CallResumed, lambda e: e.linkedid == linkedid)
    await harness.settle()
    [call] = [c for c in bridge.snapshot().calls if c.linkedid == linkedid]
    assert call.state is CallState.UP and call.agent == "1001"
    await bridge.hangup(linkedid, agent="1001")  # on the channel that picked the caller up
    [ended] = await bus.wait_for(CallEnded)
    assert ended.linkedid == linkedid and ended.hold_seconds > 0 and ended.agent == "1001"
    # logged in, rung, on the call through hold and resume (no ringing of the pickup shown), available after
    available, ringing, on_call = AgentState.AVAILABLE, AgentState.RINGING, AgentState.ON_CALL
    assert states(harness, "1001") == [available, ringing, on_call, available]
    assert pbx.channels == {}


async def test_a_held_call_is_one_call_log_with_its_hold_time(engine: AsyncEngine) -> None:
    harness = await start_harness(logged_in=False, time_scale=0.02)
    try:
        await harness.pbx.replay(trace("hold_park"), paced=True)
        await harness.settle()
        events = [e for e in harness.bus.events if isinstance(e, HANDLED)]  # what the app subscribes it to
    finally:
        await harness.bridge.stop()
        await harness.pbx.stop()
    [ended] = [e for e in events if isinstance(e, CallEnded)]
    writer = CallLogWriter(make_sessionmaker(engine), region="US")
    for event in events:
        writer.receive(event)  # type: ignore[arg-type]
    await writer.drain()
    assert not writer.failed
    async with make_sessionmaker(engine)() as session:
        logs = (await session.scalars(select(CallLog))).all()
        assert [log.linkedid for log in logs] == [ended.linkedid]
        [log] = logs
        assert log.hold_seconds == ended.hold_seconds > 0 and log.agent == "1001"
        assert log.talk_seconds == ended.talk_seconds
        legs = (await session.scalars(select(CallLeg).where(CallLeg.call_id == log.id))).all()
        assert [leg.agent for leg in legs if leg.answered_at] == ["1001"]


async def test_an_ami_user_without_originate_offers_no_hold_dial_or_spy(caplog: pytest.LogCaptureFixture) -> None:
    pbx = DemoPbx(secret=SECRET, time_scale=0.01, seed=7, write_classes=frozenset({"call", "agent", "system"}))
    await pbx.start()
    bridge = make_bridge(pbx, WatchedBus())
    try:
        await bridge.start()
        await asyncio.wait_for(bridge.resynced.wait(), 10)
        assert bridge.capabilities == frozenset(Capability) - {Capability.DIAL, Capability.HOLD, Capability.SPY}
        assert bridge.snapshot().capabilities == bridge.capabilities
        assert "may not use Originate: dial, hold, spy not offered" in caplog.text
        for refused in (bridge.dial("1001", "+15559870000"), bridge.hold("1", "1001"), bridge.resume("1", "1001")):
            with pytest.raises(CommandError) as caught:
                await refused
            assert caught.value.code is CommandErrorCode.NOT_SUPPORTED
        assert not [a for a in pbx.actions_received if a.get("Action") in ("Originate", "Park")]
    finally:
        await bridge.stop()
        await pbx.stop()
