"""Agent states true to the PBX, against the demo PBX over TCP: wrap-up enforced with a pause of its own, a pause
the agent set surviving calls, a reject that keeps the caller queued."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from crm_core.calls.events import (
    AgentRinging,
    AgentState,
    AgentStateChanged,
    CallAnswered,
    CallDirection,
    CallEnded,
    CallOffered,
    CallOutcome,
    CallTransferred,
    TransferKind,
)
from cti_bridge.adapter import CommandError, CommandErrorCode
from cti_bridge.demo_pbx import DemoPbx
from cti_bridge.normalize import QueueCallerAbandoned
from cti_bridge.tracker import WRAP_UP_REASON
from tests.cti.conftest import start_harness
from tests.cti.helpers import SECRET, Harness, WatchedBus, make_bridge


@pytest.fixture
async def wrapping() -> AsyncIterator[Harness]:
    """Agents in support and sales; wrap-up lasts 30 s, longer than any test (the agent ends it by saving)."""
    harness = await start_harness(logged_in=True, wrapup_seconds=30.0)
    try:
        yield harness
    finally:
        await harness.bridge.stop()
        await harness.pbx.stop()


async def until(harness: Harness, condition: Callable[[], bool], rounds: int = 50) -> None:
    """Round trips through the PBX (a marker event each) until `condition` holds: the bridge's commands and the
    events they cause have then been processed."""
    for _ in range(rounds):
        if condition():
            return
        await harness.settle()
    raise AssertionError("the PBX never got there")


def pauses_sent(harness: Harness, agent: str) -> list[tuple[str, str, str]]:
    return [
        (a.get("Queue", ""), a["Paused"], a.get("Reason", ""))
        for a in harness.pbx.actions_received
        if a.get("Action") == "QueuePause" and a.get("Interface") == f"Local/{agent}@agents"
    ]


async def test_wrap_up_pauses_the_agent_at_the_pbx_and_lifts_only_its_own_pause(wrapping: Harness) -> None:
    pbx, bus, bridge = wrapping.pbx, wrapping.bus, wrapping.bridge
    linkedid = await pbx.place_inbound_call("+15551230001", "Alice", "support", agent="1001", talk_s=0.5)
    await bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid)
    await bus.wait_for(AgentStateChanged, lambda e: e.agent == "1001" and e.state is AgentState.WRAP_UP)
    member = pbx.members["support"]["1001"]
    await until(wrapping, lambda: member.paused)
    assert member.reason == WRAP_UP_REASON
    assert "1001" not in pbx.available_agents("support")  # the next caller is not offered to 1001
    assert bridge.snapshot().agents[0].state is AgentState.WRAP_UP

    bridge.end_wrap_up("1001")  # disposition saved
    await until(wrapping, lambda: not member.paused)
    await wrapping.settle()
    [*_, last] = bus.of(AgentStateChanged, agent="1001")
    assert last.state is AgentState.AVAILABLE
    assert pauses_sent(wrapping, "1001") == [("support", "true", WRAP_UP_REASON), ("support", "false", "")]


async def test_a_pause_set_during_wrap_up_is_never_lifted_by_it(wrapping: Harness) -> None:
    pbx, bus, bridge = wrapping.pbx, wrapping.bus, wrapping.bridge
    linkedid = await pbx.place_inbound_call("+15551230001", "Alice", "support", agent="1001", talk_s=0.5)
    await bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid)
    member = pbx.members["support"]["1001"]
    await until(wrapping, lambda: member.paused)
    await bridge.pause("1001", "Coaching")  # a supervisor takes the agent aside during the wrap-up
    await until(wrapping, lambda: member.reason == "Coaching")
    bridge.end_wrap_up("1001")
    [paused] = await bus.wait_for(AgentStateChanged, lambda e: e.agent == "1001" and e.state is AgentState.PAUSED)
    assert paused.reason == "Coaching"
    await wrapping.settle()
    assert member.paused and member.reason == "Coaching"
    assert ("support", "false", "") not in pauses_sent(wrapping, "1001")


async def test_a_lunch_pause_survives_an_outbound_call_and_its_wrap_up(wrapping: Harness) -> None:
    pbx, bus, bridge = wrapping.pbx, wrapping.bus, wrapping.bridge
    await bridge.pause("1001", "Lunch")
    await bus.wait_for(AgentStateChanged, lambda e: e.agent == "1001" and e.state is AgentState.PAUSED)
    await bridge.dial("1001", "+15559870000")
    [offered] = await bus.wait_for(CallOffered, lambda e: e.direction is CallDirection.OUTBOUND)
    [ended] = await bus.wait_for(CallEnded, lambda e: e.linkedid == offered.linkedid)
    assert ended.outcome is CallOutcome.ANSWERED and ended.agent == "1001"
    await bus.wait_for(AgentStateChanged, lambda e: e.agent == "1001" and e.state is AgentState.WRAP_UP)
    bridge.end_wrap_up("1001")
    await wrapping.settle()
    states = [e.state for e in bus.of(AgentStateChanged, agent="1001")]
    assert states[-1] is AgentState.PAUSED and AgentState.AVAILABLE not in states[states.index(AgentState.PAUSED) :]
    assert bus.of(AgentStateChanged, agent="1001")[-1].reason == "Lunch"
    member = pbx.members["support"]["1001"]
    assert member.paused and member.reason == "Lunch"
    # the recorded call's member status (Paused: 0) did not reach the bridge as an unpause; no wrap-up pause was set
    assert pauses_sent(wrapping, "1001") == [("", "true", "Lunch")]
    assert bridge.snapshot().agents[0].paused_reason == "Lunch"


async def test_reject_while_ringing_keeps_the_caller_queued_and_another_agent_gets_it(harness: Harness) -> None:
    pbx, bus, bridge = harness.pbx, harness.bus, harness.bridge
    linkedid = await pbx.place_inbound_call("+15551230001", "Alice", "support", answer_after_s=40, talk_s=0.5)
    await bus.wait_for(AgentRinging, lambda e: e.linkedid == linkedid, count=2)
    await bridge.hangup(linkedid, agent="1001")  # the agent's Hang up while it rings: a reject
    [answered] = await bus.wait_for(CallAnswered, lambda e: e.linkedid == linkedid)
    assert answered.agent == "1002"
    [ended] = await bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid)
    assert ended.outcome is CallOutcome.ANSWERED and ended.agent == "1002" and ended.queue == "support"
    assert not [e for e in harness.pbx_events if isinstance(e, QueueCallerAbandoned)]
    rejected = [leg for leg in ended.legs if leg.agent == "1001"]
    assert rejected and all(leg.answered_at is None for leg in rejected)
    await harness.settle()
    assert bus.of(AgentStateChanged, agent="1001")[-1].state is AgentState.AVAILABLE


async def test_the_only_free_agent_who_rejects_is_rung_again(harness: Harness) -> None:
    pbx, bus, bridge = harness.pbx, harness.bus, harness.bridge
    await bridge.pause("1002", "Break")
    await bus.wait_for(AgentStateChanged, lambda e: e.agent == "1002" and e.state is AgentState.PAUSED)
    linkedid = await pbx.place_inbound_call("+15551230001", "Alice", "support", answer_after_s=40, talk_s=0.5)
    await bus.wait_for(AgentRinging, lambda e: e.linkedid == linkedid and e.agent == "1001")
    await bridge.hangup(linkedid, agent="1001")
    rings = await bus.wait_for(AgentRinging, lambda e: e.linkedid == linkedid and e.agent == "1001", count=2)
    assert len(rings) == 2
    [ended] = await bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid)
    assert ended.outcome is CallOutcome.ANSWERED and ended.agent == "1001"


async def answered_by(harness: Harness, agent: str, queue: str = "support") -> str:
    linkedid = await harness.pbx.place_inbound_call(
        "+15551230004", "Dave Example", queue, agent=agent, answer_after_s=0.5, talk_s=1000.0
    )
    await harness.bus.wait_for(CallAnswered, lambda e: e.linkedid == linkedid and e.agent == agent)
    return linkedid


async def test_a_blind_transfer_rings_the_target_queue_and_moves_the_call(harness: Harness) -> None:
    bus, bridge = harness.bus, harness.bridge
    linkedid = await answered_by(harness, "1001")
    await bridge.blind_transfer(linkedid, "1001", "sales")
    [transfer] = await bus.wait_for(CallTransferred, lambda e: e.linkedid == linkedid)
    assert transfer.kind is TransferKind.BLIND and transfer.from_agent == "1001"
    [ringing] = await bus.wait_for(AgentRinging, lambda e: e.linkedid == linkedid and e.queue == "sales")
    assert ringing.agent in ("2001", "2002") and ringing.caller_name == "Dave Example"
    [answered] = await bus.wait_for(CallAnswered, lambda e: e.linkedid == linkedid and e.agent == ringing.agent)
    assert answered.queue == "sales"
    await bus.wait_for(AgentStateChanged, lambda e: e.agent == "1001" and e.state is AgentState.AVAILABLE)
    [ended] = await bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid)
    assert ended.outcome is CallOutcome.ANSWERED and ended.transferred and ended.agent == ringing.agent
    assert {leg.agent for leg in ended.legs if leg.answered_at} == {"1001", ringing.agent}
    assert harness.pbx.channels == {}  # every channel of the call hung up, as on the PBX


async def test_an_attended_transfer_rings_the_target_and_hands_over_when_the_agent_hangs_up(harness: Harness) -> None:
    bus, bridge = harness.bus, harness.bridge
    linkedid = await answered_by(harness, "1001")
    await bridge.attended_transfer(linkedid, "1001", "2001")
    [consult] = await bus.wait_for(AgentRinging, lambda e: e.linkedid == linkedid and e.agent == "2001")
    assert consult.direction is CallDirection.INTERNAL and consult.caller_name == "Dave Example"
    await bus.wait_for(CallAnswered, lambda e: e.linkedid == linkedid and e.agent == "2001")
    assert not bus.of(CallTransferred, linkedid=linkedid)  # consulting: the first agent still has the caller
    await bridge.hangup(linkedid, agent="1001")  # the transferring agent hangs up: the transfer completes
    [transfer] = await bus.wait_for(CallTransferred, lambda e: e.linkedid == linkedid)
    assert transfer.kind is TransferKind.ATTENDED and transfer.target == "2001"
    [ended] = await bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid)
    assert ended.outcome is CallOutcome.ANSWERED and ended.transferred and ended.agent == "2001"
    assert harness.pbx.channels == {}


async def test_transfers_the_demo_pbx_cannot_play_are_refused_not_pretended(harness: Harness) -> None:
    linkedid = await answered_by(harness, "1001")
    for agent in ("2001", "2002"):
        await harness.bridge.pause(agent, "Meeting", queue="sales")
    with pytest.raises(CommandError) as nobody:
        await harness.bridge.blind_transfer(linkedid, "1001", "sales")
    assert nobody.value.code is CommandErrorCode.REJECTED and "Nobody is free" in nobody.value.detail
    with pytest.raises(CommandError) as to_number:
        await harness.bridge.attended_transfer(linkedid, "1001", "+15550001111")
    assert to_number.value.code is CommandErrorCode.REJECTED
    assert not harness.bus.of(CallTransferred, linkedid=linkedid)


async def test_an_agent_logged_out_stays_out_through_calls_and_can_log_in_again(harness: Harness) -> None:
    bus, bridge = harness.bus, harness.bridge
    await bridge.queue_logout("1001", "support")
    await bus.wait_for(AgentStateChanged, lambda e: e.agent == "1001" and e.state is AgentState.LOGGED_OUT)
    linkedid = await harness.pbx.place_inbound_call("+15551230001", "Alice", "support", answer_after_s=0.3, talk_s=0.3)
    [ended] = await bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid)
    assert ended.agent == "1002" and {leg.agent for leg in ended.legs} == {"1002"}
    await harness.settle()
    assert bus.of(AgentStateChanged, agent="1001")[-1].state is AgentState.LOGGED_OUT
    await bridge.queue_login("1001", "support")
    await bus.wait_for(AgentStateChanged, lambda e: e.agent == "1001" and e.state is AgentState.AVAILABLE)
    again = await answered_by(harness, "1001")
    await bridge.hangup(again, agent="1001")
    [ended] = await bus.wait_for(CallEnded, lambda e: e.linkedid == again)
    assert ended.agent == "1001" and ended.outcome is CallOutcome.ANSWERED


async def test_a_wrap_up_pause_left_by_a_bridge_that_went_away_is_lifted_at_resync() -> None:
    pbx = DemoPbx(secret=SECRET, time_scale=0.01, seed=7)
    await pbx.start()
    pbx.members["support"]["1001"].paused, pbx.members["support"]["1001"].reason = True, WRAP_UP_REASON
    pbx.members["support"]["1002"].paused, pbx.members["support"]["1002"].reason = True, "Lunch"
    bus = WatchedBus()
    bridge = make_bridge(pbx, bus, wrapup_seconds=30.0)
    harness = Harness(pbx, bridge, bus)
    try:
        await bridge.start()
        await asyncio.wait_for(bridge.resynced.wait(), 10)
        await until(harness, lambda: not pbx.members["support"]["1001"].paused)
        assert pbx.members["support"]["1002"].reason == "Lunch"  # not the CRM's to lift
        assert pauses_sent(harness, "1002") == []
    finally:
        await bridge.stop()
        await pbx.stop()
