"""The demo PBX's own calls, and every bridge command against it over TCP, with its result or its error."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import pytest

from crm_core.calls.events import (
    AgentRinging,
    AgentState,
    AgentStateChanged,
    CallAnswered,
    CallDirection,
    CallEnded,
    CallHeld,
    CallOffered,
    CallOutcome,
    CallTransferred,
    TransferKind,
)
from cti_bridge.adapter import CallState, CommandError, CommandErrorCode, SpyMode
from cti_bridge.demo_pbx import _template
from tests.cti.helpers import Harness


async def answered_call(harness: Harness, **options: object) -> str:
    options = {"answer_after_s": 0.5, "talk_s": 1000.0, **options}
    linkedid = await harness.pbx.place_inbound_call("+15551230001", "Alice Example", "support", **options)
    await harness.bus.wait_for(CallAnswered, lambda e: e.linkedid == linkedid)
    return linkedid


def event_shape(frames: list[tuple[str, frozenset[str]]]) -> list[tuple[str, frozenset[str]]]:
    return frames


async def test_a_demo_call_has_the_shape_of_the_recorded_one(harness: Harness) -> None:
    sent: list[tuple[str, frozenset[str]]] = []
    harness.pbx.on_frame_sent = lambda name, headers, _ns: sent.append((name, frozenset(headers)))
    linkedid = await harness.pbx.place_inbound_call(
        "+15557654321",
        "Carol Caller",
        "support",
        answer_after_s=0.5,
        talk_s=0.5,
        crm_vars={"CRM_CONTACT_ID": "C-1", "CRM_QUEUE": "support"},
    )
    await harness.bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid)
    recorded = [(f.headers["Event"], frozenset(f.headers)) for f in _template("inbound_queue_answered").frames]
    generated = [item for item in sent if item[0] not in ("QueueStatsChanged",)]
    # the same events, in the same order, with the same headers (values differ: ids, caller, times)
    assert [name for name, _ in generated] == [name for name, _ in recorded]
    assert generated == recorded


async def test_a_demo_call_through_the_bridge_pops_answers_and_ends(harness: Harness) -> None:
    linkedid = await harness.pbx.place_inbound_call(
        "+15551230002", "Bob Example", "sales", answer_after_s=0.3, talk_s=0.3, crm_vars={"CRM_CUSTOMER_ID": "c-42"}
    )
    [ended] = await harness.bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid)
    pops = harness.bus.of(AgentRinging, linkedid=linkedid)
    assert {p.agent for p in pops} == {"2001", "2002"} and all(p.caller_name == "Bob Example" for p in pops)
    assert all(dict(p.crm_vars) == {"CRM_CUSTOMER_ID": "c-42"} for p in pops)
    assert ended.outcome is CallOutcome.ANSWERED and ended.queue == "sales" and ended.agent in ("2001", "2002")


async def test_no_free_agent_means_the_caller_abandons(harness: Harness) -> None:
    for agent in ("1001", "1002"):
        await harness.bridge.pause(agent, "Training", queue="support")
    linkedid = await harness.pbx.place_inbound_call("+15551230003", "Dan", "support", abandon_after_s=0.5)
    [ended] = await harness.bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid)
    assert ended.outcome is CallOutcome.ABANDONED


async def test_click_to_dial(harness: Harness) -> None:
    result = await harness.bridge.dial("1001", "+1 (555) 987-0000")
    assert result.command == "dial"
    [offered] = await harness.bus.wait_for(CallOffered, lambda e: e.direction is CallDirection.OUTBOUND)
    assert offered.callee_number == "15559870000"
    [ended] = await harness.bus.wait_for(CallEnded, lambda e: e.linkedid == offered.linkedid)
    assert ended.outcome is CallOutcome.ANSWERED and ended.agent == "1001"
    originate = [a for a in harness.pbx.actions_received if a.get("Action") == "Originate"][-1]
    assert originate["Channel"] == "Local/1001@agents" and originate["Context"] == "outbound"


@pytest.mark.parametrize(
    ("agent", "number", "code"),
    [
        ("3001", "+15559870000", CommandErrorCode.AGENT_NOT_LOGGED_IN),
        ("1001", "call me", CommandErrorCode.INVALID),
        ("10;01", "+15559870000", CommandErrorCode.INVALID),
    ],
)
async def test_click_to_dial_errors(harness: Harness, agent: str, number: str, code: CommandErrorCode) -> None:
    with pytest.raises(CommandError) as caught:
        await harness.bridge.dial(agent, number)
    assert caught.value.code is code and caught.value.detail


async def test_hangup_ends_the_call_and_a_gone_call_says_so(harness: Harness) -> None:
    linkedid = await answered_call(harness)
    agent = harness.bus.of(CallAnswered, linkedid=linkedid)[0].agent
    await harness.bridge.hangup(linkedid, agent=agent)
    [ended] = await harness.bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid)
    assert ended.outcome is CallOutcome.ANSWERED
    with pytest.raises(CommandError) as caught:
        await harness.bridge.hangup(linkedid)
    assert caught.value.code is CommandErrorCode.CALL_NOT_FOUND


async def test_blind_and_attended_transfer(harness: Harness) -> None:
    linkedid = await answered_call(harness)
    agent = harness.bus.of(CallAnswered, linkedid=linkedid)[0].agent
    assert (await harness.bridge.blind_transfer(linkedid, agent, "sales")).command == "blind transfer"
    [transfer] = await harness.bus.wait_for(CallTransferred, lambda e: e.linkedid == linkedid)
    assert transfer.kind is TransferKind.BLIND and transfer.target == "sales@internal" and transfer.from_agent == agent
    with pytest.raises(CommandError) as moved:  # the call went to sales: the agent is not on it any more
        await harness.bridge.attended_transfer(linkedid, agent, "2001")
    assert moved.value.code is CommandErrorCode.CHANNEL_GONE
    second = await answered_call(harness)
    agent = harness.bus.of(CallAnswered, linkedid=second)[0].agent
    assert (await harness.bridge.attended_transfer(second, agent, "2002")).command == "attended transfer"
    transfer_action = [a for a in harness.pbx.actions_received if a.get("Action") == "Atxfer"][-1]
    assert transfer_action["Exten"] == "2002" and transfer_action["Channel"].startswith(f"Local/{agent}@agents-")
    with pytest.raises(CommandError) as caught:
        await harness.bridge.blind_transfer(second, "2001", "sales")
    assert caught.value.code is CommandErrorCode.CHANNEL_GONE
    with pytest.raises(CommandError) as bad_target:
        await harness.bridge.blind_transfer(second, agent, "sales; Hangup")
    assert bad_target.value.code is CommandErrorCode.INVALID


async def test_a_channel_that_vanished_at_the_pbx_is_reported_gone(harness: Harness) -> None:
    linkedid = await answered_call(harness)
    agent = harness.bus.of(CallAnswered, linkedid=linkedid)[0].agent
    # the PBX lost the channel but its Hangup has not reached us yet
    for channel in [c for c in harness.pbx.channels.values() if c.linkedid == linkedid]:
        harness.pbx.channels.pop(channel.uniqueid)
    with pytest.raises(CommandError) as caught:
        await harness.bridge.blind_transfer(linkedid, agent, "sales")
    assert caught.value.code is CommandErrorCode.CHANNEL_GONE


async def test_queue_login_logout_pause_unpause(harness: Harness) -> None:
    bridge, bus = harness.bridge, harness.bus
    await bridge.queue_login("3001", "support")
    [joined] = await bus.wait_for(AgentStateChanged, lambda e: e.agent == "3001")
    assert joined.state is AgentState.AVAILABLE and joined.queues == ("support",)
    with pytest.raises(CommandError) as twice:
        await bridge.queue_login("3001", "support")
    assert twice.value.code is CommandErrorCode.REJECTED
    with pytest.raises(CommandError) as nowhere:
        await bridge.queue_login("3001", "nosuchqueue")
    assert nowhere.value.code is CommandErrorCode.INVALID
    await bridge.pause("3001", "Lunch")
    [paused] = await bus.wait_for(AgentStateChanged, lambda e: e.agent == "3001" and e.state is AgentState.PAUSED)
    assert paused.reason == "Lunch"
    await bridge.unpause("3001")
    await bus.wait_for(AgentStateChanged, lambda e: e.agent == "3001" and e.state is AgentState.AVAILABLE, count=2)
    await bridge.queue_logout("3001", "support")
    await bus.wait_for(AgentStateChanged, lambda e: e.agent == "3001" and e.state is AgentState.LOGGED_OUT)
    with pytest.raises(CommandError) as gone:
        await bridge.queue_logout("3001", "support")
    assert gone.value.code is CommandErrorCode.AGENT_NOT_LOGGED_IN
    with pytest.raises(CommandError) as logged_out:
        await bridge.pause("3001", "Lunch")
    assert logged_out.value.code is CommandErrorCode.AGENT_NOT_LOGGED_IN


async def test_supervisor_spy_modes_and_hold(harness: Harness) -> None:
    linkedid = await answered_call(harness)
    agent = harness.bus.of(CallAnswered, linkedid=linkedid)[0].agent
    for mode, options in ((SpyMode.LISTEN, "q"), (SpyMode.WHISPER, "qw"), (SpyMode.BARGE, "qB")):
        await harness.bridge.spy("9001", agent, mode)
        spy = [a for a in harness.pbx.actions_received if a.get("Application") == "ChanSpy"][-1]
        assert spy["Data"] == f"Local/{agent}@agents,{options}" and spy["Channel"] == "Local/9001@agents"
    idle = "1002" if agent == "1001" else "1001"
    with pytest.raises(CommandError) as not_on_call:
        await harness.bridge.spy("9001", idle, SpyMode.LISTEN)
    assert not_on_call.value.code is CommandErrorCode.CALL_NOT_FOUND
    await harness.bridge.hold(linkedid, agent)  # a Park (see test_hold_park.py)
    await harness.bus.wait_for(CallHeld, lambda e: e.linkedid == linkedid)
    with pytest.raises(CommandError) as not_held_by_them:
        await harness.bridge.resume(linkedid, idle)
    assert not_held_by_them.value.code is CommandErrorCode.INVALID


async def test_snapshot_shows_live_calls_and_agents(harness: Harness) -> None:
    linkedid = await answered_call(harness)
    snapshot = harness.bridge.snapshot()
    assert snapshot.connected
    [call] = [c for c in snapshot.calls if c.linkedid == linkedid]
    assert call.state is CallState.UP and call.caller_name == "Alice Example" and call.queue == "support"
    agents = {a.agent: a for a in snapshot.agents}
    assert agents[call.agent or ""].state is AgentState.ON_CALL
    assert {q.queue for q in snapshot.queues} == {"support", "sales"}


async def test_commands_when_the_pbx_is_unreachable(harness: Harness) -> None:
    await harness.pbx.stop()
    await asyncio.wait_for(harness.bridge.connection.disconnected.wait(), 5)
    with pytest.raises(CommandError) as caught:
        await harness.bridge.queue_login("1001", "sales")
    assert caught.value.code is CommandErrorCode.PBX_UNREACHABLE
    assert not harness.bridge.snapshot().connected


async def test_the_demo_pbx_records_answered_calls_into_the_recordings_folder(harness: Harness, tmp_path: Path) -> None:
    harness.pbx.recordings_dir = tmp_path / "recordings"
    linkedid = await answered_call(harness, talk_s=1.0)
    ended = (await harness.bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid))[0]
    await harness.pbx.recordings_written()
    assert ended.recording is not None  # MIXMONITOR_FILENAME, as Asterisk reports it
    name = ended.recording.rsplit("/", 1)[-1]
    assert [p.name for p in (tmp_path / "recordings").iterdir()] == [name]  # no partial file left behind
    with wave.open(str(tmp_path / "recordings" / name)) as audio:
        assert (audio.getnchannels(), audio.getframerate(), audio.getsampwidth()) == (1, 8000, 2)
        assert audio.getnframes() >= 8000  # at least a second
