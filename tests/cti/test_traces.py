"""Every recorded Asterisk 22 call trace replayed through the bridge over TCP: calls, call legs, pops, agent states."""

from __future__ import annotations

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
    CallResumed,
    CallTransferred,
    QueueStatsChanged,
    TransferKind,
)
from tests.cti.conftest import trace
from tests.cti.helpers import Harness


async def replay(harness: Harness, name: str) -> None:
    sent = await harness.pbx.replay(trace(name))
    assert sent > 0
    await harness.settle()


def states(harness: Harness, agent: str) -> list[AgentState]:
    return [e.state for e in harness.bus.of(AgentStateChanged, agent=agent)]


async def test_inbound_call_answered_in_a_ringall_queue(replay_harness: Harness) -> None:
    await replay(replay_harness, "inbound_queue_answered")
    bus = replay_harness.bus
    [offered] = bus.of(CallOffered)
    assert (offered.caller_number, offered.caller_name, offered.queue) == ("+15551230001", "Alice Example", "support")
    assert offered.direction is CallDirection.INBOUND and offered.callee_number == "18005550100"
    # both members of the ringall queue got a pop, with what the IVR learned about the caller
    pops = bus.of(AgentRinging)
    assert sorted(p.agent for p in pops) == ["1001", "1002"]
    assert all(p.linkedid == offered.linkedid and p.caller_name == "Alice Example" for p in pops)
    assert all(dict(p.crm_vars) == {"CRM_CONTACT_ID": "C-230001", "CRM_QUEUE": "support"} for p in pops)
    assert {p.agent_channel for p in pops} == {"Local/1001@agents-00000002;1", "Local/1002@agents-00000001;1"}
    [answered] = bus.of(CallAnswered)
    assert answered.agent == "1001" and answered.wait_seconds == 2.0
    [ended] = bus.of(CallEnded)
    assert ended.outcome is CallOutcome.ANSWERED and ended.agent == "1001" and not ended.transferred
    assert ended.hangup_cause == 16 and ended.recording == "/var/lib/asterisk/spool/monitor/1795462442.1.wav"
    legs = {leg.agent: leg for leg in ended.legs}
    assert legs["1001"].answered_at is not None and legs["1002"].answered_at is None
    assert states(replay_harness, "1001") == [AgentState.RINGING, AgentState.ON_CALL, AgentState.AVAILABLE]
    assert states(replay_harness, "1002")[-1] is AgentState.AVAILABLE
    final = bus.of(QueueStatsChanged, queue="support")[-1]
    assert (final.waiting, final.answered, final.abandoned, final.service_level_pct) == (0, 1, 0, 100.0)


async def test_caller_abandons_after_two_rounds_of_ring_no_answer(replay_harness: Harness) -> None:
    await replay(replay_harness, "inbound_abandoned")
    bus = replay_harness.bus
    [ended] = bus.of(CallEnded)
    assert ended.outcome is CallOutcome.ABANDONED and ended.answered_at is None and ended.agent is None
    assert len(ended.legs) == 4 and all(leg.answered_at is None for leg in ended.legs)  # 2 agents x 2 rounds
    assert len(bus.of(AgentRinging)) == 4 and not bus.of(CallAnswered)
    assert ended.wait_seconds == 22.0  # QueueCallerAbandon's HoldTime, from the PBX
    final = bus.of(QueueStatsChanged, queue="support")[-1]
    assert (final.waiting, final.answered, final.abandoned, final.service_level_pct) == (0, 0, 1, 0.0)


async def test_paused_agents_a_new_member_and_a_hold_on_music(replay_harness: Harness) -> None:
    await replay(replay_harness, "queue_hold_moh")
    bus = replay_harness.bus
    paused = [e for e in bus.of(AgentStateChanged, agent="1001") if e.state is AgentState.PAUSED]
    assert paused and paused[0].reason == "Meeting"
    assert states(replay_harness, "1001")[-1] is AgentState.AVAILABLE  # unpaused at the end
    [ended] = bus.of(CallEnded)
    assert ended.agent == "1003" and ended.outcome is CallOutcome.ANSWERED
    # queue music while waiting is not a hold; the WaitExten(m) after the answer is
    [held] = bus.of(CallHeld)
    [resumed] = bus.of(CallResumed)
    assert held.agent == resumed.agent == "1003" and ended.hold_seconds >= 0.0
    assert AgentState.LOGGED_OUT in states(replay_harness, "1003")  # QueueRemove at the end


async def test_blind_transfer_is_one_call_with_two_legs(replay_harness: Harness) -> None:
    await replay(replay_harness, "transfer_blind")
    bus = replay_harness.bus
    [ended] = bus.of(CallEnded)
    [transfer] = bus.of(CallTransferred)
    assert transfer.kind is TransferKind.BLIND and transfer.from_agent == "1001" and transfer.target == "sales@internal"
    assert ended.transferred and ended.agent == "2001" and ended.queue == "sales"
    answered = [leg.agent for leg in ended.legs if leg.answered_at is not None]
    assert answered == ["1001", "2001"]
    assert len(bus.of(CallOffered)) == 1  # the transfer did not make a second call


async def test_attended_transfer_hands_the_caller_to_the_consulted_agent(replay_harness: Harness) -> None:
    await replay(replay_harness, "transfer_attended")
    bus = replay_harness.bus
    [ended] = bus.of(CallEnded)
    [transfer] = bus.of(CallTransferred)
    assert transfer.kind is TransferKind.ATTENDED and transfer.from_agent == "1001" and transfer.target == "2001"
    assert ended.transferred and ended.agent == "2001" and ended.outcome is CallOutcome.ANSWERED
    consult = [p for p in bus.of(AgentRinging) if p.agent == "2001"]
    assert consult and consult[0].direction is CallDirection.INTERNAL and consult[0].caller_number == "+15551230005"
    assert {leg.agent for leg in ended.legs if leg.answered_at} == {"1001", "2001"}


async def test_redirect_to_another_queue_is_a_transfer(replay_harness: Harness) -> None:
    await replay(replay_harness, "transfer_redirect")
    bus = replay_harness.bus
    [ended] = bus.of(CallEnded)
    [transfer] = bus.of(CallTransferred)
    assert transfer.kind is TransferKind.REDIRECT and transfer.target == "sales@queue"
    assert ended.agent == "2002" and ended.queue == "sales" and ended.transferred
    # 1001's AgentComplete comes last, after the call ended: it must not resurrect anything
    assert states(replay_harness, "1001")[-1] is AgentState.AVAILABLE


async def test_click_to_dial_rings_the_agent_then_the_customer(replay_harness: Harness) -> None:
    await replay(replay_harness, "click_to_dial")
    bus = replay_harness.bus
    [offered] = bus.of(CallOffered)
    assert offered.direction is CallDirection.OUTBOUND and offered.callee_number == "15559870000"
    [answered] = bus.of(CallAnswered)
    assert answered.agent == "1001"
    [ended] = bus.of(CallEnded)
    assert ended.outcome is CallOutcome.ANSWERED and ended.direction is CallDirection.OUTBOUND
    assert ended.callee_number == "15559870000" and ended.agent == "1001"
    assert states(replay_harness, "1001")[:2] == [AgentState.RINGING, AgentState.ON_CALL]


async def test_click_to_dial_the_agent_never_answers(replay_harness: Harness) -> None:
    await replay(replay_harness, "click_to_dial_agent_no_answer")
    bus = replay_harness.bus
    assert not bus.of(CallOffered)  # the customer was never dialled
    [ended] = bus.of(CallEnded)
    assert ended.outcome is CallOutcome.FAILED and ended.hangup_cause == 19
    assert states(replay_harness, "1002")[0] is AgentState.RINGING


async def test_member_management_without_calls(replay_harness: Harness) -> None:
    await replay(replay_harness, "agent_pause")
    bus = replay_harness.bus
    assert not bus.of(CallEnded)
    reasons = {e.reason for e in bus.of(AgentStateChanged) if e.state is AgentState.PAUSED}
    assert reasons and None not in reasons
    assert any("sales" in e.queues for e in bus.of(AgentStateChanged))


async def test_three_callers_two_answered_one_waiting_then_all_hung_up(replay_harness: Harness) -> None:
    await replay(replay_harness, "queue_status")
    bus = replay_harness.bus
    ended = bus.of(CallEnded)
    assert len(ended) == 3
    assert sorted(e.outcome for e in ended) == sorted(
        [CallOutcome.ANSWERED, CallOutcome.ANSWERED, CallOutcome.ABANDONED]
    )
    assert {e.caller_name for e in ended} == {"Gina Example", "Hank Example", "Ivy Example"}
    peak = max(s.waiting for s in bus.of(QueueStatsChanged, queue="support"))
    assert peak >= 1


async def test_idle_pbx_and_protocol_only_traces_make_no_calls(replay_harness: Harness) -> None:
    for name in (
        "queue_status_idle",
        "bad_action",
        "bad_login_observer",
        "login_md5_challenge",
        "reconnect_after_kill",
        "reconnect_after_kill.after",
        "reconnect_after_restart.after",
    ):
        await replay_harness.pbx.replay(trace(name))
    await replay_harness.settle()
    assert not replay_harness.bus.of(CallEnded) and not replay_harness.bus.of(CallOffered)


async def test_the_burst_of_200_calls(replay_harness: Harness) -> None:
    await replay(replay_harness, "burst_200_calls")
    bus = replay_harness.bus
    ended = bus.of(CallEnded)
    # the recording's own figures (tests/fixtures/ami/README.md): 200 callers, 35 answered, 165 abandoned
    assert len(ended) == 200 and len({e.linkedid for e in ended}) == 200
    assert sum(e.outcome is CallOutcome.ANSWERED for e in ended) == 35
    assert sum(e.outcome is CallOutcome.ABANDONED for e in ended) == 165
    assert len(bus.of(CallOffered)) == 200
    for queue in ("support", "sales"):
        assert bus.of(QueueStatsChanged, queue=queue)[-1].waiting == 0
