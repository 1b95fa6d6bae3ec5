"""The live model of calls, agents and queues, fed typed PBX events, emitting crm_core telephony domain events.

Calls are keyed by Linkedid, channels by Uniqueid. An agent reached through `Local/<ext>@agents` is that agent on
both halves (`;1`/`;2`) of the Local channel. Figures that Asterisk states itself (HoldTime, TalkTime) are taken
from it; times come from the tracker's clock, since AMI events carry none unless `timestampevents` is on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from crm_core.calls.events import (
    AgentRinging,
    AgentState,
    AgentStateChanged,
    CallAnswered,
    CallDirection,
    CallEnded,
    CallHeld,
    CallLegSummary,
    CallOffered,
    CallOutcome,
    CallResumed,
    CallsResynced,
    CallStarted,
    CallTransferred,
    QueueStatsChanged,
    TransferKind,
)
from cti_bridge.adapter import AgentStatus, CallState, LiveCall, PbxSnapshot
from cti_bridge.normalize import (
    AgentEvent,
    AttendedTransferred,
    BlindTransferred,
    ChannelCreated,
    ChannelEvent,
    ChannelHungUp,
    ChannelReported,
    ChannelStateChanged,
    DialBegan,
    DialEnded,
    DialplanStep,
    HoldChanged,
    MusicOnHold,
    ParkingChanged,
    PbxEvent,
    QueueCallerAbandoned,
    QueueCallerJoined,
    QueueCallerLeft,
    QueueEntryReported,
    QueueMemberChanged,
    QueueParamsReported,
    Recording,
    VariableSet,
    agent_of,
)

log = logging.getLogger(__name__)

Emit = Callable[[object], None]
# asks the PBX to pause (True) or unpause (False) an agent in one queue, for wrap-up; the adapter sends it
PausePbx = Callable[[str, str, bool], None]
UNKNOWN = "<unknown>"
# the reason of the pause the CRM sets for wrap-up: the only pause it ever lifts by itself
WRAP_UP_REASON = "Wrap-up"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Leg:
    agent: str
    channel: str
    queue: str | None
    rang_at: datetime | None
    answered_at: datetime | None = None
    ended_at: datetime | None = None


@dataclass
class _Call:
    linkedid: str
    direction: CallDirection
    offered_at: datetime
    caller_number: str = ""
    caller_name: str = ""
    callee_number: str = ""
    queue: str | None = None
    offered: bool = False  # CallOffered published
    answered_at: datetime | None = None
    agent: str | None = None
    wait_seconds: float | None = None
    legs: dict[str, _Leg] = field(default_factory=dict)
    crm_vars: dict[str, str] = field(default_factory=dict)
    channels: set[str] = field(default_factory=set)
    caller_uniqueid: str | None = None  # the channel sitting in the queue
    queued_since: datetime | None = None
    hold_started: datetime | None = None
    hold_seconds: float = 0.0
    recording: str | None = None
    transferred: bool = False
    pending_transfer: TransferKind | None = None
    hangup_cause: int | None = None
    abandoned: bool = False
    voicemail: bool = False
    far_end_answered: bool = False  # outbound: the dialled number answered
    announced: bool = False  # CallStarted published
    origin_agent: str | None = None  # outbound: the agent whose device the call started on
    parked_space: str | None = None  # on hold in this parking space
    parked_by: str | None = None  # the agent holding it: their leg lasts through the hold


@dataclass
class _Agent:
    extension: str
    state: AgentState
    since: datetime
    queues: dict[str, tuple[bool, str]] = field(default_factory=dict)  # queue -> (paused, reason)
    linkedid: str | None = None
    calls_today: int = 0
    wrap_up: asyncio.TimerHandle | None = None
    wrap_up_paused: set[str] = field(default_factory=set)  # queues the CRM paused for this wrap-up


@dataclass
class QueueTally:
    """One queue's running figures, kept by every adapter's tracker (AMI and generic CTI)."""

    name: str
    waiting: dict[str, datetime] = field(default_factory=dict)  # linkedid -> joined at
    answered: int = 0
    answered_in_time: int = 0
    abandoned: int = 0
    total_wait: float = 0.0
    total_talk: float = 0.0
    talked: int = 0


def queue_stats_event(
    queue: QueueTally, counts: dict[AgentState, int], logged_in: int, now: datetime
) -> QueueStatsChanged:
    """The wallboard's figures of one queue, from its tally and its members' states counted."""
    offered = queue.answered + queue.abandoned
    return QueueStatsChanged(
        queue=queue.name,
        waiting=len(queue.waiting),
        longest_wait_seconds=max(((now - t).total_seconds() for t in queue.waiting.values()), default=0.0),
        answered=queue.answered,
        abandoned=queue.abandoned,
        logged_in=logged_in,
        available=counts[AgentState.AVAILABLE],
        on_call=counts[AgentState.ON_CALL] + counts[AgentState.RINGING],
        paused=counts[AgentState.PAUSED],
        wrap_up=counts[AgentState.WRAP_UP],
        service_level_pct=round(100.0 * queue.answered_in_time / offered, 1) if offered else None,
        average_wait_seconds=round(queue.total_wait / queue.answered, 1) if queue.answered else 0.0,
        average_talk_seconds=round(queue.total_talk / queue.talked, 1) if queue.talked else 0.0,
        changed_at=now,
    )


class CallTracker:
    """Apply PBX events with `apply`; domain events go to `emit` as they happen (the pop first of all)."""

    def __init__(
        self,
        emit: Emit,
        *,
        service_level_seconds: int = 20,
        wrapup_seconds: float = 0.0,
        clock: Callable[[], datetime] = _now,
        pause_pbx: PausePbx | None = None,
    ) -> None:
        self._emit = emit
        self._sl = service_level_seconds
        self._wrapup = wrapup_seconds
        self._pause_pbx = pause_pbx
        self._clock = clock
        self.calls: dict[str, _Call] = {}
        self.channels: dict[str, tuple[str, str]] = {}  # uniqueid -> (linkedid, channel name)
        self.agents: dict[str, _Agent] = {}
        self.queues: dict[str, QueueTally] = {}
        self.members: dict[str, set[str]] = {}  # queue -> extensions logged in to it (wallboard figures need these)
        self._pickups: dict[str, str] = {}  # agent -> the held call the CRM is originating them back into
        self._aliases: dict[str, str] = {}  # a pickup channel's own Linkedid -> the held call's
        self._early_ivr: dict[str, dict[str, str]] = {}  # uniqueid -> CRM_ variables told before its channel
        self._handlers: dict[type, Callable[[PbxEvent], None]] = {
            ChannelCreated: self._channel_created,  # type: ignore[dict-item]
            ChannelStateChanged: self._channel_state,  # type: ignore[dict-item]
            ChannelHungUp: self._hangup,  # type: ignore[dict-item]
            DialplanStep: self._dialplan,  # type: ignore[dict-item]
            VariableSet: self._variable,  # type: ignore[dict-item]
            QueueCallerJoined: self._caller_joined,  # type: ignore[dict-item]
            QueueCallerLeft: self._caller_left,  # type: ignore[dict-item]
            QueueCallerAbandoned: self._caller_abandoned,  # type: ignore[dict-item]
            AgentEvent: self._agent_event,  # type: ignore[dict-item]
            DialBegan: self._dial_began,  # type: ignore[dict-item]
            DialEnded: self._dial_ended,  # type: ignore[dict-item]
            BlindTransferred: self._blind_transfer,  # type: ignore[dict-item]
            AttendedTransferred: self._attended_transfer,  # type: ignore[dict-item]
            MusicOnHold: self._music_on_hold,  # type: ignore[dict-item]
            HoldChanged: self._hold_changed,  # type: ignore[dict-item]
            ParkingChanged: self._parking,  # type: ignore[dict-item]
            Recording: self._recording,  # type: ignore[dict-item]
            QueueMemberChanged: self._member,  # type: ignore[dict-item]
        }

    # --- entry point ------------------------------------------------------------------------------------------

    def apply(self, event: PbxEvent) -> None:
        if self._aliases:
            # the pickup of a held call starts as a call of its own (an Originate); it is the held call
            alias = self._aliases.get(getattr(event, "linkedid", ""))
            if alias is not None:
                event = replace(event, linkedid=alias)  # type: ignore[arg-type]
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    # --- channels and calls -----------------------------------------------------------------------------------

    def _call_for(self, linkedid: str) -> _Call | None:
        return self.calls.get(linkedid)

    def _channel_created(self, ev: ChannelCreated) -> None:
        self.channels[ev.uniqueid] = (ev.linkedid, ev.channel)
        call = self.calls.get(ev.linkedid)
        if call is None:
            agent = agent_of(ev.channel)
            outbound = agent is not None and ev.uniqueid == ev.linkedid
            held = self.calls.get(self._pickups.pop(agent, "")) if outbound and agent is not None else None
            if held is not None:
                # the agent's device rung back into the parking space of their held call: part of that call
                self._aliases[ev.linkedid] = held.linkedid
                self.channels[ev.uniqueid] = (held.linkedid, ev.channel)
                held.channels.add(ev.uniqueid)
                return
            call = _Call(
                linkedid=ev.linkedid,
                direction=CallDirection.OUTBOUND if outbound else CallDirection.INBOUND,
                offered_at=self._clock(),
                callee_number="" if outbound else ev.exten,
                origin_agent=agent if outbound else None,
            )
            self.calls[ev.linkedid] = call
            if outbound and agent is not None:
                # click-to-dial rings the agent's own device first
                self._set_agent(agent, AgentState.RINGING, linkedid=ev.linkedid)
        call.channels.add(ev.uniqueid)
        if self._early_ivr:
            call.crm_vars.update(self._early_ivr.pop(ev.uniqueid, {}))
        self._learn_caller(call, ev)

    def ivr_variables(self, uniqueid: str, variables: Iterable[tuple[str, str]]) -> None:
        """CRM_* variables the product's IVR set on a channel, told by the IVR itself (see IvrVariablesSet): the same
        as their VarSet events, which an AMI user without the `dialplan` read class never gets."""
        known = self.channels.get(uniqueid)
        call = self.calls.get(known[0]) if known is not None else None
        if call is not None:
            call.crm_vars.update(variables)
            return
        if len(self._early_ivr) >= 10_000:  # channels that never came: forget the oldest
            del self._early_ivr[next(iter(self._early_ivr))]
        self._early_ivr[uniqueid] = dict(variables)

    def _learn_caller(self, call: _Call, ev: ChannelEvent) -> None:
        if call.direction is not CallDirection.INBOUND or agent_of(ev.channel) is not None:
            return
        if ev.caller_number and ev.caller_number != UNKNOWN and not call.caller_number:
            call.caller_number = ev.caller_number
        if ev.caller_name and ev.caller_name != UNKNOWN and not call.caller_name:
            call.caller_name = ev.caller_name
        if call.caller_number and not call.announced:
            # seconds before the queue rings anyone (the IVR runs first): the pop can be prepared now
            call.announced = True
            self._emit(
                CallStarted(
                    linkedid=call.linkedid,
                    direction=call.direction,
                    number=call.caller_number,
                    name=call.caller_name,
                    started_at=call.offered_at,
                )
            )

    def _channel_state(self, ev: ChannelStateChanged) -> None:
        call = self.calls.get(ev.linkedid)
        if call is None:
            return
        self._learn_caller(call, ev)
        if call.direction is CallDirection.OUTBOUND and ev.state == "6" and call.origin_agent is not None:
            if agent_of(ev.channel) == call.origin_agent and call.origin_agent in self.agents:
                agent = self.agents[call.origin_agent]
                if agent.state is AgentState.RINGING:
                    self._set_agent(call.origin_agent, AgentState.ON_CALL, linkedid=call.linkedid)

    def _dialplan(self, ev: DialplanStep) -> None:
        call = self.calls.get(ev.linkedid)
        if call is not None and ev.application == "VoiceMail":
            call.voicemail = True

    def _variable(self, ev: VariableSet) -> None:
        call = self.calls.get(ev.linkedid)
        if call is None:
            return
        if ev.variable == "MIXMONITOR_FILENAME":
            call.recording = ev.value
        else:
            call.crm_vars[ev.variable] = ev.value

    def _hangup(self, ev: ChannelHungUp) -> None:
        self.channels.pop(ev.uniqueid, None)
        call = self.calls.get(ev.linkedid)
        if call is None:
            return
        call.channels.discard(ev.uniqueid)
        now = self._clock()
        leg = call.legs.get(ev.channel)
        if leg is not None and leg.ended_at is None and not (call.parked_space and call.parked_by == leg.agent):
            leg.ended_at = now
            self._leg_over(call, leg, now)
        if ev.uniqueid == call.caller_uniqueid or ev.uniqueid == call.linkedid:
            call.hangup_cause = ev.cause
        if not call.channels:
            self._finish(call, now, closed_at_resync=False)

    def _leg_over(self, call: _Call, leg: _Leg, now: datetime) -> None:
        agent = self.agents.get(leg.agent)
        if agent is None or agent.linkedid not in (call.linkedid, None):
            return
        if leg.answered_at is not None:
            self._after_call(leg.agent)
        elif agent.state is AgentState.RINGING:
            self._set_agent(leg.agent, self._idle_state(agent))

    # --- queues -----------------------------------------------------------------------------------------------

    def _queue(self, name: str) -> QueueTally:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = QueueTally(name)
        return queue

    def _caller_joined(self, ev: QueueCallerJoined) -> None:
        call = self.calls.get(ev.linkedid)
        if call is None:
            call = self.calls[ev.linkedid] = _Call(ev.linkedid, CallDirection.INBOUND, self._clock())
            call.channels.add(ev.uniqueid)
        now = self._clock()
        self._learn_caller(call, ev)
        if ev.caller_number and ev.caller_number != UNKNOWN:
            call.caller_number = ev.caller_number
        if ev.caller_name and ev.caller_name != UNKNOWN:
            call.caller_name = ev.caller_name
        if call.answered_at is not None:
            # back in a queue after an agent had it: a transfer (blind, or a Redirect when no event said so)
            kind = call.pending_transfer or TransferKind.REDIRECT
            self._transferred(call, kind, f"{ev.queue}@queue", now)
        call.caller_uniqueid = ev.uniqueid
        call.queue = ev.queue
        call.queued_since = now
        self._queue(ev.queue).waiting[call.linkedid] = now
        if not call.offered:
            call.offered = True
            self._emit(
                CallOffered(
                    linkedid=call.linkedid,
                    direction=call.direction,
                    caller_number=call.caller_number,
                    caller_name=call.caller_name,
                    callee_number=call.callee_number,
                    queue=ev.queue,
                    position=ev.position,
                    offered_at=call.offered_at,
                    crm_vars=tuple(sorted(call.crm_vars.items())),
                )
            )
        self._queue_stats(ev.queue, now)

    def _caller_left(self, ev: QueueCallerLeft) -> None:
        queue = self._queue(ev.queue)
        if queue.waiting.pop(ev.linkedid, None) is not None:
            self._queue_stats(ev.queue, self._clock())

    def _caller_abandoned(self, ev: QueueCallerAbandoned) -> None:
        call = self.calls.get(ev.linkedid)
        queue = self._queue(ev.queue)
        queue.waiting.pop(ev.linkedid, None)
        queue.abandoned += 1
        if call is not None:
            call.abandoned = True
            call.wait_seconds = float(ev.hold_time)
        self._queue_stats(ev.queue, self._clock())

    # --- agents offered calls by a queue ----------------------------------------------------------------------

    def _agent_event(self, ev: AgentEvent) -> None:
        call = self.calls.get(ev.linkedid)
        now = self._clock()
        if ev.name == "AgentCalled":
            if call is None:
                return
            call.legs[ev.agent_channel] = _Leg(ev.agent, ev.agent_channel, ev.queue or None, now)
            waited = (now - call.queued_since).total_seconds() if call.queued_since else 0.0
            # the screen pop: published before any other bookkeeping of this frame
            self._emit(
                AgentRinging(
                    linkedid=call.linkedid,
                    agent=ev.agent,
                    agent_channel=ev.agent_channel,
                    queue=ev.queue or None,
                    caller_number=call.caller_number or ev.caller_number,
                    caller_name=call.caller_name or ev.caller_name,
                    waited_seconds=waited,
                    rang_at=now,
                    crm_vars=tuple(sorted(call.crm_vars.items())),
                    direction=call.direction,
                )
            )
            self._set_agent(ev.agent, AgentState.RINGING, linkedid=call.linkedid)
        elif ev.name == "AgentConnect":
            if call is None:
                return
            leg = call.legs.get(ev.agent_channel)
            if leg is None:
                leg = call.legs[ev.agent_channel] = _Leg(ev.agent, ev.agent_channel, ev.queue or None, now)
            leg.answered_at = now
            wait = float(ev.hold_time) if ev.hold_time is not None else 0.0
            first_answer = call.answered_at is None
            if first_answer:
                call.answered_at = now
                call.wait_seconds = wait
            call.agent = ev.agent
            call.queued_since = None
            queue = self._queue(ev.queue)
            queue.waiting.pop(call.linkedid, None)
            queue.answered += 1
            queue.total_wait += wait
            if wait <= self._sl:
                queue.answered_in_time += 1
            ring_seconds = (now - leg.rang_at).total_seconds() if leg.rang_at else 0.0
            self._emit(
                CallAnswered(
                    linkedid=call.linkedid,
                    agent=ev.agent,
                    queue=ev.queue or None,
                    answered_at=now,
                    wait_seconds=wait,
                    ring_seconds=ring_seconds,
                )
            )
            self._set_agent(ev.agent, AgentState.ON_CALL, linkedid=call.linkedid)
            self._queue_stats(ev.queue, now)
        elif ev.name == "AgentComplete":
            queue = self._queue(ev.queue)
            if ev.talk_time is not None:
                queue.total_talk += ev.talk_time
                queue.talked += 1
            if call is not None:
                leg = call.legs.get(ev.agent_channel)
                if leg is not None and leg.ended_at is None:
                    leg.ended_at = now
                    self._leg_over(call, leg, now)
            self._queue_stats(ev.queue, now)
        elif ev.name in ("AgentRingNoAnswer", "AgentDump"):
            if call is not None:
                leg = call.legs.get(ev.agent_channel)
                if leg is not None and leg.ended_at is None:
                    leg.ended_at = now
                    self._leg_over(call, leg, now)

    # --- direct dials: click-to-dial, attended-transfer consults ------------------------------------------------

    def _dial_began(self, ev: DialBegan) -> None:
        call = self.calls.get(ev.linkedid or ev.dest_linkedid)
        if call is None:
            return
        now = self._clock()
        dest_agent = agent_of(ev.dest_channel)
        if call.direction is CallDirection.OUTBOUND and ev.uniqueid and agent_of(ev.channel) == call.origin_agent:
            if dest_agent is None and not call.offered:
                # the agent's device answered and the PBX now dials the customer
                call.callee_number = ev.dest_exten
                call.offered = True
                call.agent = call.origin_agent
                call.announced = True
                self._emit(
                    CallStarted(
                        linkedid=call.linkedid,
                        direction=call.direction,
                        number=ev.dest_exten,
                        name="",
                        started_at=call.offered_at,
                    )
                )
                self._emit(
                    CallOffered(
                        linkedid=call.linkedid,
                        direction=call.direction,
                        caller_number=call.origin_agent or "",
                        caller_name="",
                        callee_number=ev.dest_exten,
                        queue=None,
                        position=None,
                        offered_at=call.offered_at,
                        crm_vars=tuple(sorted(call.crm_vars.items())),
                    )
                )
            return
        if dest_agent is not None and ev.uniqueid and ev.dest_channel not in call.legs:
            # an agent dialled directly (attended transfer consult, internal call): ring without a queue
            call.legs[ev.dest_channel] = _Leg(dest_agent, ev.dest_channel, None, now)
            self._emit(
                AgentRinging(
                    linkedid=call.linkedid,
                    agent=dest_agent,
                    agent_channel=ev.dest_channel,
                    queue=None,
                    caller_number=call.caller_number,
                    caller_name=call.caller_name,
                    waited_seconds=0.0,
                    rang_at=now,
                    crm_vars=tuple(sorted(call.crm_vars.items())),
                    direction=CallDirection.INTERNAL,
                )
            )
            self._set_agent(dest_agent, AgentState.RINGING, linkedid=call.linkedid)

    def _dial_ended(self, ev: DialEnded) -> None:
        call = self.calls.get(ev.linkedid or ev.dest_linkedid)
        if call is None or ev.status != "ANSWER":
            return
        now = self._clock()
        if call.direction is CallDirection.OUTBOUND and agent_of(ev.channel) == call.origin_agent:
            if agent_of(ev.dest_channel) is None and not call.far_end_answered:
                call.far_end_answered = True
                call.answered_at = now
                agent = call.origin_agent or ""
                call.legs.setdefault(ev.channel, _Leg(agent, ev.channel, None, call.offered_at, now))
                self._emit(
                    CallAnswered(
                        linkedid=call.linkedid,
                        agent=agent,
                        queue=None,
                        answered_at=now,
                        wait_seconds=0.0,
                        ring_seconds=(now - call.offered_at).total_seconds(),
                    )
                )
                self._set_agent(agent, AgentState.ON_CALL, linkedid=call.linkedid)
            return
        leg = call.legs.get(ev.dest_channel)
        if leg is not None and leg.queue is None and leg.answered_at is None and ev.uniqueid:
            leg.answered_at = now
            self._emit(
                CallAnswered(
                    linkedid=call.linkedid,
                    agent=leg.agent,
                    queue=None,
                    answered_at=now,
                    wait_seconds=0.0,
                    ring_seconds=(now - leg.rang_at).total_seconds() if leg.rang_at else 0.0,
                )
            )
            self._set_agent(leg.agent, AgentState.ON_CALL, linkedid=call.linkedid)

    # --- transfers, hold, recording ---------------------------------------------------------------------------

    def _call_of_channel(self, uniqueid: str, channel: str) -> _Call | None:
        known = self.channels.get(uniqueid)
        if known is not None:
            return self.calls.get(known[0])
        for linkedid, name in self.channels.values():
            if name == channel:
                return self.calls.get(linkedid)
        return None

    def _blind_transfer(self, ev: BlindTransferred) -> None:
        call = self.calls.get(ev.linkedid) or self._call_of_channel(ev.transferer_uniqueid, ev.transferer_channel)
        if call is not None and ev.success:
            call.pending_transfer = TransferKind.BLIND
            self._transferred(call, TransferKind.BLIND, ev.target, self._clock(), agent_of(ev.transferer_channel))

    def _attended_transfer(self, ev: AttendedTransferred) -> None:
        call = self.calls.get(ev.linkedid) or self._call_of_channel(ev.transferer_uniqueid, ev.transferer_channel)
        if call is None or not ev.success:
            return
        target = agent_of(ev.target_channel) or ev.target_channel
        # the consult leg's agent now talks to the caller
        for leg in call.legs.values():
            if leg.queue is None and leg.answered_at is not None and leg.ended_at is None:
                target = leg.agent
                call.agent = leg.agent
        self._transferred(call, TransferKind.ATTENDED, target, self._clock(), agent_of(ev.transferer_channel))

    def _transferred(
        self, call: _Call, kind: TransferKind, target: str, now: datetime, from_agent: str | None = None
    ) -> None:
        if (
            call.transferred
            and call.pending_transfer is kind
            and kind is TransferKind.BLIND
            and target.endswith("@queue")
        ):
            # the BlindTransfer event already announced it; the queue join that follows is the same transfer
            call.pending_transfer = None
            return
        call.transferred = True
        self._emit(
            CallTransferred(
                linkedid=call.linkedid,
                kind=kind,
                from_agent=from_agent or call.agent,
                target=target,
                transferred_at=now,
            )
        )

    def _music_on_hold(self, ev: MusicOnHold) -> None:
        call = self.calls.get(ev.linkedid)
        # music while queued is the queue's; music while an agent has the caller is a hold
        if call is None or call.answered_at is None or call.queued_since is not None:
            return
        if ev.uniqueid != call.caller_uniqueid and call.direction is CallDirection.INBOUND:
            return
        self._hold(call, ev.started)

    def _hold_changed(self, ev: HoldChanged) -> None:
        call = self.calls.get(ev.linkedid)
        if call is not None and call.answered_at is not None:
            self._hold(call, ev.held)

    def _hold(self, call: _Call, held: bool) -> None:
        now = self._clock()
        if held and call.hold_started is None:
            call.hold_started = now
            self._emit(CallHeld(linkedid=call.linkedid, agent=call.agent, held_at=now))
        elif not held and call.hold_started is not None:
            call.hold_seconds += (now - call.hold_started).total_seconds()
            call.hold_started = None
            self._emit(CallResumed(linkedid=call.linkedid, agent=call.agent, resumed_at=now))

    def expect_pickup(self, agent: str, linkedid: str) -> None:
        """The CRM is about to originate `agent` into the parking space of held call `linkedid` (resume)."""
        self._pickups[agent] = linkedid

    def cancel_pickup(self, agent: str) -> None:
        self._pickups.pop(agent, None)

    def _parking(self, ev: ParkingChanged) -> None:
        call = self.calls.get(ev.linkedid)
        if call is None:
            return
        now = self._clock()
        if ev.name == "ParkedCall":
            # a hold: the agent's channels hang up, but the agent still has the call (their leg goes on)
            call.parked_space = ev.space
            call.parked_by = agent_of(ev.parker) or call.agent
            self._hold(call, True)
        elif ev.name == "UnParkedCall":
            holder, call.parked_space, call.parked_by = call.parked_by, None, None
            self._absorb_pickup(call, ev.retriever_channel)
            retriever = agent_of(ev.retriever_channel)
            held = next((leg for leg in call.legs.values() if leg.agent == holder and leg.ended_at is None), None)
            if retriever is not None:
                if held is not None and retriever == holder:
                    del call.legs[held.channel]  # the same leg, on the channel that picked the caller up
                    held.channel = ev.retriever_channel
                    call.legs[held.channel] = held
                else:
                    if held is not None:
                        held.ended_at = now
                        self._leg_over(call, held, now)
                    call.legs[ev.retriever_channel] = _Leg(retriever, ev.retriever_channel, call.queue, now, now)
                    call.agent = retriever
                self._set_agent(retriever, AgentState.ON_CALL, linkedid=call.linkedid)
            self._hold(call, False)
        elif ev.name == "ParkedCallTimeOut":
            call.parked_space = None  # the PBX rings the holder back; their leg goes on
            self._hold(call, False)

    def _absorb_pickup(self, call: _Call, retriever_channel: str) -> None:
        """A pickup the CRM did not announce (a phone dialled the parking space): the call the tracker made of the
        retriever's channel is this call."""
        for linkedid, name in list(self.channels.values()):
            if name != retriever_channel or linkedid == call.linkedid:
                continue
            pickup = self.calls.get(linkedid)
            if pickup is None or pickup.offered or pickup.direction is not CallDirection.OUTBOUND:
                continue
            del self.calls[linkedid]
            self._aliases[linkedid] = call.linkedid
            for uniqueid in pickup.channels:
                known = self.channels.get(uniqueid)
                if known is not None:
                    self.channels[uniqueid] = (call.linkedid, known[1])
            call.channels |= pickup.channels
            return

    def _recording(self, ev: Recording) -> None:
        call = self.calls.get(ev.linkedid)
        if call is not None and ev.started and call.recording is None:
            call.recording = f"{ev.uniqueid}.wav"

    # --- agents -----------------------------------------------------------------------------------------------

    def _member(self, ev: QueueMemberChanged) -> None:
        agent = self._agent(ev.agent)
        before = (agent.state, dict(agent.queues))
        if ev.name == "QueueMemberRemoved":
            agent.queues.pop(ev.queue, None)
            self.members.get(ev.queue, set()).discard(ev.agent)
        else:
            agent.queues[ev.queue] = (ev.paused, ev.paused_reason)
            self.members.setdefault(ev.queue, set()).add(ev.agent)
        if agent.state not in (AgentState.RINGING, AgentState.ON_CALL, AgentState.WRAP_UP):
            self._set_agent(ev.agent, self._idle_state(agent), force=before[1] != agent.queues)
        elif before[1].keys() != agent.queues.keys() and (before[1] or agent.state is not AgentState.RINGING):
            # busy on a call: the state and its clock stay, but who watches must learn the queues changed (a
            # supervisor logging the agent out, or back in, during the call)
            self._emit(
                AgentStateChanged(
                    agent=ev.agent,
                    state=agent.state,
                    changed_at=agent.since,
                    queues=tuple(sorted(agent.queues)),
                    linkedid=agent.linkedid,
                )
            )
        self._queue_stats(ev.queue, self._clock())

    def _agent(self, extension: str) -> _Agent:
        agent = self.agents.get(extension)
        if agent is None:
            agent = self.agents[extension] = _Agent(extension, AgentState.LOGGED_OUT, self._clock())
        return agent

    @staticmethod
    def _idle_state(agent: _Agent) -> AgentState:
        if not agent.queues:
            return AgentState.LOGGED_OUT
        if all(paused for paused, _ in agent.queues.values()):
            return AgentState.PAUSED
        return AgentState.AVAILABLE

    def _after_call(self, extension: str) -> None:
        agent = self._agent(extension)
        agent.calls_today += 1
        if self._wrapup > 0:
            self._set_agent(extension, AgentState.WRAP_UP, linkedid=agent.linkedid)
            self._pause_for_wrap_up(agent)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            agent.wrap_up = loop.call_later(self._wrapup, self._wrap_up_over, extension)
        else:
            self._set_agent(extension, self._idle_state(agent))

    def _pause_for_wrap_up(self, agent: _Agent) -> None:
        """Wrap-up is enforced at the PBX: a queue would otherwise ring the agent at once. Only queues the agent is
        not paused in get the CRM's own pause; a pause the agent already has (lunch) is left as it is."""
        if self._pause_pbx is None:
            return
        for queue, (paused, _reason) in sorted(agent.queues.items()):
            if not paused and queue not in agent.wrap_up_paused:
                agent.wrap_up_paused.add(queue)
                self._pause_pbx(agent.extension, queue, True)

    def _lift_wrap_up_pause(self, agent: _Agent) -> None:
        """Unpause the queues the CRM paused for wrap-up, unless someone paused the agent there meanwhile for
        another reason (the PBX keeps one pause per queue: the last reason set is the one in force)."""
        queues, agent.wrap_up_paused = agent.wrap_up_paused, set()
        if self._pause_pbx is None:
            return
        for queue in sorted(queues):
            paused, reason = agent.queues.get(queue, (False, ""))
            if queue in agent.queues and not (paused and reason != WRAP_UP_REASON):
                self._pause_pbx(agent.extension, queue, False)
                agent.queues[queue] = (False, "")  # as the PBX will confirm: no "paused (Wrap-up)" in between

    def _wrap_up_over(self, extension: str) -> None:
        agent = self._agent(extension)
        agent.wrap_up = None
        if agent.state is AgentState.WRAP_UP:
            self._lift_wrap_up_pause(agent)
            self._set_agent(extension, self._idle_state(agent))
            for queue in agent.queues:
                self._queue_stats(queue, self._clock())

    def pause_accepted(self, extension: str, paused: bool, reason: str, queue: str | None) -> None:
        """The PBX accepted a (un)pause the CRM sent: known now, before its QueueMemberPause event arrives, so that a
        wrap-up ending meanwhile never lifts a pause an agent or supervisor has just set."""
        agent = self.agents.get(extension)
        if agent is None:
            return
        for name in [queue] if queue else list(agent.queues):
            if name in agent.queues:
                agent.queues[name] = (paused, reason if paused else "")

    def end_wrap_up(self, extension: str) -> None:
        """The agent finished wrap-up early (disposition saved)."""
        agent = self.agents.get(extension)
        if agent is not None and agent.wrap_up is not None:
            agent.wrap_up.cancel()
            self._wrap_up_over(extension)

    def _set_agent(
        self, extension: str, state: AgentState, *, linkedid: str | None = None, force: bool = False
    ) -> None:
        agent = self._agent(extension)
        if state is not AgentState.WRAP_UP and agent.wrap_up is not None:
            # a new call (the agent dialled out) ends the wrap-up early
            agent.wrap_up.cancel()
            agent.wrap_up = None
            self._lift_wrap_up_pause(agent)
        if agent.state is state and agent.linkedid == linkedid and not force:
            return
        agent.state = state
        agent.since = self._clock()
        agent.linkedid = linkedid if state in (AgentState.RINGING, AgentState.ON_CALL, AgentState.WRAP_UP) else None
        reasons = {reason for paused, reason in agent.queues.values() if paused and reason}
        self._emit(
            AgentStateChanged(
                agent=extension,
                state=state,
                changed_at=agent.since,
                reason=", ".join(sorted(reasons)) or None if state is AgentState.PAUSED else None,
                queues=tuple(sorted(agent.queues)),
                linkedid=agent.linkedid,
            )
        )

    # --- end of a call ----------------------------------------------------------------------------------------

    def _finish(self, call: _Call, now: datetime, *, closed_at_resync: bool) -> None:
        self.calls.pop(call.linkedid, None)
        if self._aliases:
            self._aliases = {alias: held for alias, held in self._aliases.items() if held != call.linkedid}
        call.parked_space = None
        if call.hold_started is not None:
            call.hold_seconds += (now - call.hold_started).total_seconds()
            call.hold_started = None
        for leg in call.legs.values():
            if leg.ended_at is None:
                leg.ended_at = now
                self._leg_over(call, leg, now)
        if call.queue is not None:
            queue = self._queue(call.queue)
            if queue.waiting.pop(call.linkedid, None) is not None:
                if not call.abandoned and call.answered_at is None:
                    call.abandoned = True
                    queue.abandoned += 1
                self._queue_stats(call.queue, now)
        outcome = self._outcome(call)
        if outcome is None:
            return  # a channel of no interest (a spy session, a failed originate with no customer side)
        answered_leg = [leg for leg in call.legs.values() if leg.answered_at is not None]
        talk = sum(((leg.ended_at or now) - leg.answered_at).total_seconds() for leg in answered_leg if leg.answered_at)
        if call.wait_seconds is None:
            call.wait_seconds = (
                ((call.answered_at or now) - call.offered_at).total_seconds() if call.queue is not None else 0.0
            )
        self._emit(
            CallEnded(
                linkedid=call.linkedid,
                direction=call.direction,
                outcome=outcome,
                caller_number=call.caller_number or (call.origin_agent or ""),
                caller_name=call.caller_name,
                callee_number=call.callee_number,
                queue=call.queue,
                agent=call.agent,
                offered_at=call.offered_at,
                answered_at=call.answered_at,
                ended_at=now,
                wait_seconds=call.wait_seconds,
                talk_seconds=max(0.0, talk - call.hold_seconds),
                hold_seconds=call.hold_seconds,
                hangup_cause=call.hangup_cause,
                recording=call.recording,
                legs=tuple(
                    CallLegSummary(
                        agent=leg.agent,
                        channel=leg.channel,
                        queue=leg.queue,
                        rang_at=leg.rang_at,
                        answered_at=leg.answered_at,
                        ended_at=leg.ended_at,
                    )
                    for leg in call.legs.values()
                ),
                crm_vars=tuple(sorted(call.crm_vars.items())),
                closed_at_resync=closed_at_resync,
                transferred=call.transferred,
            )
        )

    @staticmethod
    def _outcome(call: _Call) -> CallOutcome | None:
        if call.direction is CallDirection.OUTBOUND:
            return CallOutcome.ANSWERED if call.far_end_answered else CallOutcome.FAILED
        if call.answered_at is not None:
            return CallOutcome.ANSWERED
        if call.voicemail:
            return CallOutcome.VOICEMAIL
        if call.queue is None:
            # never reached a queue: hung up in the IVR, or a technical channel; only callers are logged
            return CallOutcome.ABANDONED if call.caller_number else None
        if call.abandoned:
            return CallOutcome.ABANDONED
        return CallOutcome.MISSED

    # --- queue figures ----------------------------------------------------------------------------------------

    def queue_stats(self, name: str, now: datetime | None = None) -> QueueStatsChanged:
        now = now or self._clock()
        queue = self._queue(name)
        members = [self.agents[ext] for ext in self.members.get(name, ()) if name in self.agents[ext].queues]
        counts = dict.fromkeys(AgentState, 0)
        for agent in members:
            paused = agent.queues[name][0]
            state = agent.state
            if state is AgentState.AVAILABLE and paused:
                state = AgentState.PAUSED
            counts[state] += 1
        return queue_stats_event(queue, counts, len(members), now)

    def _queue_stats(self, name: str, now: datetime) -> None:
        if name:
            self._emit(self.queue_stats(name, now))

    # --- resync after a (re)connect ---------------------------------------------------------------------------

    def resync(
        self,
        channels: list[ChannelReported],
        members: list[QueueMemberChanged],
        entries: list[QueueEntryReported],
        params: list[QueueParamsReported],
    ) -> None:
        """Make the model match what the PBX reports now. Calls that ended while we were blind are closed."""
        now = self._clock()
        alive: dict[str, list[ChannelReported]] = {}
        for row in channels:
            alive.setdefault(row.linkedid, []).append(row)
        for call in list(self.calls.values()):
            if call.linkedid not in alive:
                self._finish(call, now, closed_at_resync=True)
            else:
                call.channels = {row.uniqueid for row in alive[call.linkedid]}
        self.channels = {row.uniqueid: (row.linkedid, row.channel) for row in channels}
        for linkedid, rows in alive.items():
            if linkedid in self.calls:
                continue
            first = min(rows, key=lambda r: (r.uniqueid != linkedid, r.uniqueid))
            agent_rows = [r for r in rows if agent_of(r.channel) is not None]
            outbound = agent_of(first.channel) is not None and first.uniqueid == linkedid
            longest = max((r.seconds for r in rows), default=0)
            call = _Call(
                linkedid=linkedid,
                direction=CallDirection.OUTBOUND if outbound else CallDirection.INBOUND,
                offered_at=now.fromtimestamp(now.timestamp() - longest, UTC),
                origin_agent=agent_of(first.channel) if outbound else None,
                offered=True,  # the PBX had it before we saw it: consumers learn of it from the snapshot
            )
            call.channels = {r.uniqueid for r in rows}
            for row in rows:
                self._learn_caller(call, row)
            for row in agent_rows:
                ext = agent_of(row.channel)
                if ext is None or (not row.channel.endswith(";1") and row.channel.startswith("Local/")):
                    continue
                up = row.state == "6"
                call.legs[row.channel] = _Leg(ext, row.channel, None, now, now if up else None)
                if up:
                    call.agent = ext
                    call.answered_at = call.answered_at or now
            self.calls[linkedid] = call
        # callers still queued
        for queue in self.queues.values():
            queue.waiting.clear()
        for entry in entries:
            linkedid = self.channels.get(entry.uniqueid, (entry.uniqueid, ""))[0]
            joined = datetime.fromtimestamp(now.timestamp() - entry.wait, UTC)
            self._queue(entry.queue).waiting[linkedid] = joined
            queued = self.calls.get(linkedid)
            if queued is not None:
                call = queued
                call.queue = entry.queue
                call.caller_uniqueid = entry.uniqueid
                call.queued_since = joined
                call.caller_number = call.caller_number or entry.caller_number
                call.caller_name = call.caller_name or entry.caller_name
        for figures in params:
            queue = self._queue(figures.queue)
            queue.answered = max(queue.answered, figures.completed)
            queue.abandoned = max(queue.abandoned, figures.abandoned)
        # agents: membership and pause from the PBX, call state from the live channels
        on_call = {leg.agent: call.linkedid for call in self.calls.values() for leg in call.legs.values()}
        reported: dict[str, dict[str, tuple[bool, str]]] = {}
        for member in members:
            reported.setdefault(member.agent, {})[member.queue] = (member.paused, member.paused_reason)
        self.members = {}
        for extension, queues in reported.items():
            for queue_name in queues:
                self.members.setdefault(queue_name, set()).add(extension)
        for extension in set(self.agents) | set(reported):
            agent = self._agent(extension)
            agent.queues = reported.get(extension, {})
            if agent.wrap_up is None and self._pause_pbx is not None:
                # a wrap-up pause nobody will lift (the bridge restarted during a wrap-up): lift it now
                agent.wrap_up_paused.clear()
                for queue_name, (paused, reason) in sorted(agent.queues.items()):
                    if paused and reason == WRAP_UP_REASON:
                        self._pause_pbx(extension, queue_name, False)
            if extension in on_call:
                self._set_agent(extension, AgentState.ON_CALL, linkedid=on_call[extension], force=True)
            else:
                self._set_agent(extension, self._idle_state(agent), force=True)
        self._emit(CallsResynced(live_linkedids=tuple(sorted(self.calls)), resynced_at=now))
        for name in sorted(self.queues):
            self._queue_stats(name, now)

    # --- what the desktop re-sends after a browser reconnect ----------------------------------------------------

    def agent_view(self, extension: str) -> tuple[AgentStatus | None, list[LiveCall]]:
        """One agent's state and the live call ringing it or up with it (not a full snapshot per reconnect)."""
        agent = self.agents.get(extension)
        if agent is None:
            return None, []
        status = self._status(agent)
        live = [self.calls[agent.linkedid]] if agent.linkedid and agent.linkedid in self.calls else []
        calls = [c for c in self.snapshot_calls(live) if extension in c.ringing_agents or c.agent == extension]
        return status, calls

    def snapshot(self, *, connected: bool) -> PbxSnapshot:
        now = self._clock()
        calls = self.snapshot_calls(self.calls.values())
        agents = tuple(self._status(a) for a in sorted(self.agents.values(), key=lambda a: a.extension))
        queues = tuple(self.queue_stats(name, now) for name in sorted(self.queues))
        return PbxSnapshot(connected=connected, calls=tuple(calls), agents=agents, queues=queues, taken_at=now)

    @staticmethod
    def _status(agent: _Agent) -> AgentStatus:
        return AgentStatus(
            agent=agent.extension,
            state=agent.state,
            since=agent.since,
            queues=tuple(sorted(agent.queues)),
            paused_reason=", ".join(sorted({r for p, r in agent.queues.values() if p and r})) or None,
            linkedid=agent.linkedid,
            calls_today=agent.calls_today,
        )

    @staticmethod
    def snapshot_calls(live: Iterable[_Call]) -> list[LiveCall]:
        calls = []
        for call in live:
            ringing = tuple(leg.agent for leg in call.legs.values() if leg.answered_at is None and leg.ended_at is None)
            if call.hold_started is not None:
                state = CallState.HELD
            elif call.answered_at is not None and call.queued_since is None:
                state = CallState.UP
            elif ringing:
                state = CallState.RINGING
            else:
                state = CallState.QUEUED
            calls.append(
                LiveCall(
                    linkedid=call.linkedid,
                    direction=call.direction,
                    state=state,
                    caller_number=call.caller_number,
                    caller_name=call.caller_name,
                    callee_number=call.callee_number,
                    queue=call.queue,
                    agent=call.agent,
                    ringing_agents=ringing,
                    offered_at=call.offered_at,
                    answered_at=call.answered_at,
                    crm_vars=tuple(sorted(call.crm_vars.items())),
                )
            )
        return calls
