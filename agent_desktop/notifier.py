"""The only code that emits to browsers: telephony events from the bus become pops, call states and wallboard
updates in the right rooms. An agent's pop goes to that agent's room and nowhere else."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable
from contextvars import ContextVar
from dataclasses import is_dataclass
from datetime import datetime
from typing import Any, TypeVar

import socketio
from socketio import packet as socketio_packet

from agent_desktop.pop import PopBuilder
from agent_desktop.rooms import AGENT_NAMESPACE, SUPERVISOR_NAMESPACE, agent_room, supervisors_room, user_room
from crm_core.bus import EventBus, field_names
from crm_core.calls.events import (
    AgentRinging,
    AgentStateChanged,
    CallAnswered,
    CallEnded,
    CallHeld,
    CallOffered,
    CallResumed,
    CallStarted,
    CallTransferred,
    CallWrappedUp,
    QueueStatsChanged,
)
from crm_core.recordings.events import KeywordHeard
from crm_core.sla.events import SlaClockBreached, SlaClockWarned, TicketEscalated
from crm_core.sms.events import SmsReceived, SmsStatusChanged
from crm_core.tickets.events import TicketChanged
from cti_bridge.adapter import PbxAdapter, PbxSnapshot

log = logging.getLogger(__name__)

T = TypeVar("T")

# `Notifier.delivered` waits at most this long for the browsers' connections to take what a piece of work sent them
DELIVERY_WAIT_S = 0.02
# the Engine.IO sessions that the work being run under `Notifier.delivered` (in this task) has put frames for
_TOUCHED: ContextVar[set[str] | None] = ContextVar("notifier_touched", default=None)


def plain(value: Any) -> Any:
    """Events and snapshots as JSON-able dicts (datetimes as ISO strings, enums as their values). A dataclass is
    read field by field: `dataclasses.asdict` deep-copies every value first, which cost the CTI process more than
    the conversion itself (two agent states per call)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return {name: plain(getattr(value, name)) for name in field_names(type(value))}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):  # a snapshot's capabilities
        return sorted(plain(v) for v in value)
    if hasattr(value, "value") and isinstance(getattr(value, "value", None), str):
        return value.value
    return value


class Notifier:
    def __init__(
        self, sio: socketio.AsyncServer, pops: PopBuilder, *, pbx: PbxAdapter | None, wrapup_seconds: int
    ) -> None:
        self._sio = sio
        self._pops = pops
        self._pbx = pbx
        self._wrapup = wrapup_seconds
        self._rang: defaultdict[str, set[str]] = defaultdict(set)  # linkedid -> agents whose devices rang
        self._late: set[asyncio.Task[None]] = set()
        self._chains: dict[tuple[str, str], asyncio.Task[None]] = {}
        # python-socketio's in-memory manager when this process holds every browser; None through Redis
        manager = getattr(sio, "manager", None)
        self._local: Any = manager if manager is not None and type(manager).__name__ == "AsyncManager" else None
        self.pops_sent = 0

    def attach(self, bus: EventBus) -> None:
        bus.subscribe(CallStarted, self._pops.started)
        bus.subscribe(CallOffered, self._offered)
        bus.subscribe(AgentRinging, self._ringing)
        bus.subscribe(CallAnswered, self._answered)
        bus.subscribe(CallHeld, self._held)
        bus.subscribe(CallResumed, self._resumed)
        bus.subscribe(CallTransferred, self._transferred)
        bus.subscribe(CallEnded, self._ended)
        bus.subscribe(AgentStateChanged, self._agent_state)
        bus.subscribe(QueueStatsChanged, self._queue_stats)
        bus.subscribe(CallWrappedUp, self._wrapped_up)
        bus.subscribe(SlaClockWarned, self._sla_warned)
        bus.subscribe(SlaClockBreached, self._sla_breached)
        bus.subscribe(TicketEscalated, self._ticket_escalated)
        bus.subscribe(TicketChanged, self._ticket_changed)
        bus.subscribe(KeywordHeard, self._keyword_heard)
        bus.subscribe(SmsReceived, self._sms)
        bus.subscribe(SmsStatusChanged, self._sms)

    # Delivery never holds up the bus (and so the CTI bridge). In one process (python-socketio's in-memory manager)
    # a message is encoded once and put straight on the Engine.IO queue of each browser in the room: nothing there
    # waits, so messages to one agent stay in order, and a pop leaves in the same turn of the event loop as the AMI
    # frame that rang the agent (python-socketio's own emit spends two more turns: a task per recipient, then a
    # wait for them). Through Redis (scaled out) each room has its own chain of sends instead, so that a slow
    # publish delays nobody else.

    async def _emit_agent(self, agent: str, event: str, data: dict[str, Any]) -> None:
        await self._send(agent_room(agent), AGENT_NAMESPACE, event, data)

    async def _emit_supervisors(self, event: str, data: dict[str, Any]) -> None:
        await self._send(supervisors_room(), SUPERVISOR_NAMESPACE, event, data)

    async def _send(self, room: str, namespace: str, event: str, data: dict[str, Any]) -> None:
        """To a room — or to one browser: every client is also in a room named by its sid."""
        if self._local is None:
            self._post(room, namespace, event, data)
            return
        browsers = list(self._local.get_participants(namespace, room))
        if not browsers:
            return
        try:
            encoded = self._sio.packet_class(socketio_packet.EVENT, namespace=namespace, data=[event, data]).encode()
        except Exception:
            log.exception("could not encode %s for %s", event, room)
            return
        touched = _TOUCHED.get()
        for _sid, eio_sid in browsers:
            for part in encoded if isinstance(encoded, list) else [encoded]:
                try:
                    await self._sio.eio.send(eio_sid, part)
                except Exception:  # that browser just went away; the others still get it
                    log.debug("could not send %s to %s", event, eio_sid)
            if touched is not None:
                touched.add(eio_sid)

    async def delivered(self, work: Awaitable[T]) -> T:
        """Run `work` (something that publishes on the bus), then wait, at most DELIVERY_WAIT_S, until the
        browsers' WebSocket connections have taken what it sent them.

        For a caller that answers somebody else next: the generic CTI endpoint answers the PBX's gateway. Writing
        that HTTP answer costs about as much as a pop's whole way to the browser, and Engine.IO's writer only runs
        three turns of the event loop after a frame is queued (on Python 3.11), so the answer used to go first
        (bench/generic_cti.py: half the pop's time was there). A browser on long-polling, or one that stopped
        reading, is not waited for beyond the bound. Through Redis (scaled out) nothing here is sent to a browser,
        and nothing is waited for."""
        touched: set[str] = set()
        token = _TOUCHED.set(touched)
        try:
            result = await work
        finally:
            _TOUCHED.reset(token)
        if touched:
            await self._taken(touched)
        return result

    async def _taken(self, eio_sids: set[str]) -> None:
        """Until the WebSocket writers of these Engine.IO sessions have taken every frame queued for them (as
        Engine.IO's own close waits for them), or DELIVERY_WAIT_S."""
        sockets = self._sio.eio.sockets
        queues = [
            socket.queue
            for sid in eio_sids
            if (socket := sockets.get(sid)) is not None and socket.upgraded and not socket.closed
        ]
        if not queues:
            return
        waiting = [asyncio.ensure_future(queue.join()) for queue in queues]
        try:
            await asyncio.wait(waiting, timeout=DELIVERY_WAIT_S)
        finally:  # past the bound, or the gateway went away: nothing is left waiting on a queue
            for task in waiting:
                task.cancel()

    def _post(self, room: str, namespace: str, event: str, data: dict[str, Any]) -> None:
        key = (namespace, room)
        previous = self._chains.get(key)
        task = asyncio.create_task(self._deliver(previous, room, namespace, event, data))
        self._chains[key] = task
        task.add_done_callback(
            lambda done, key=key: self._chains.pop(key, None) if self._chains.get(key) is done else None
        )

    async def _deliver(
        self, previous: asyncio.Task[None] | None, room: str, namespace: str, event: str, data: dict[str, Any]
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            await self._sio.emit(event, data, room=room, namespace=namespace)
        except Exception:
            log.exception("could not send %s to %s", event, room)

    # SLA: a warning or breach goes to the ticket's assignee and to the supervisors; a "notify" escalation to the
    # supervisor the rule names.

    async def _sla_warned(self, event: SlaClockWarned) -> None:
        await self._sla_alert("sla_warning", event.assignee_extension, plain(event))

    async def _sla_breached(self, event: SlaClockBreached) -> None:
        await self._sla_alert("sla_breach", event.assignee_extension, plain(event))

    async def _sla_alert(self, name: str, extension: str | None, data: dict[str, Any]) -> None:
        if extension:
            await self._emit_agent(extension, name, data)
        await self._emit_supervisors(name, data)

    async def _ticket_escalated(self, event: TicketEscalated) -> None:
        if event.action == "notify" and event.notify_extension:
            await self._emit_agent(event.notify_extension, "ticket_escalated", plain(event))

    async def _ticket_changed(self, event: TicketChanged) -> None:
        """A ticket's assignee and watchers (each signed-in user's own room) see what changed and refresh it."""
        data = plain(event)
        data.pop("audience", None)  # who else follows the ticket is not each recipient's business
        for user_id in event.audience:
            await self._send(user_room(user_id), AGENT_NAMESPACE, "ticket_changed", data)

    async def flush(self) -> None:
        """Wait until everything posted so far is handed to Socket.IO (tests, shutdown)."""
        while self._chains:
            await asyncio.wait(list(self._chains.values()))

    async def _offered(self, event: CallOffered) -> None:
        self._pops.offered(event)
        if event.direction.value == "outbound" and event.caller_number:
            # click-to-dial and callbacks: the agent (the "caller" here) sees whom they are calling
            ringing = AgentRinging(
                linkedid=event.linkedid,
                agent=event.caller_number,
                agent_channel="",
                queue=None,
                caller_number=event.callee_number,
                caller_name="",
                waited_seconds=0.0,
                rang_at=event.offered_at,
                crm_vars=event.crm_vars,
                direction=event.direction,
            )
            await self._ringing(ringing)

    async def _ringing(self, event: AgentRinging) -> None:
        self._rang[event.linkedid].add(event.agent)
        pop = self._pops.ready(event)
        if pop is None:
            # not built yet (the caller skipped the IVR): build it aside, the bus and the bridge must not wait
            task = asyncio.create_task(self._late_pop(event))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
            return
        await self._emit_agent(event.agent, "pop", self._with_commands(event.linkedid, pop))
        self.pops_sent += 1
        await self._emit_supervisors("call_ringing", {"linkedid": event.linkedid, "agent": event.agent})

    async def _late_pop(self, event: AgentRinging) -> None:
        try:
            pop = await self._pops.for_ringing(event)
        except Exception:
            log.exception("no pop for call %s", event.linkedid)
            return
        await self._emit_agent(event.agent, "pop", self._with_commands(event.linkedid, pop))
        self.pops_sent += 1

    def _with_commands(self, linkedid: str, pop: dict[str, Any]) -> dict[str, Any]:
        """A call of a PBX that can do less than the primary one (a generic CTI PBX) carries the commands it can
        do: the desktop shows that call's controls for those only."""
        commands_for = getattr(self._pbx, "commands_for", None)
        commands = commands_for(linkedid) if commands_for is not None else None
        return pop if commands is None else {**pop, "commands": commands}

    async def _state_to_rung(self, linkedid: str, data: dict[str, Any]) -> None:
        for agent in self._rang.get(linkedid, ()):
            await self._emit_agent(agent, "call_state", data)

    async def _answered(self, event: CallAnswered) -> None:
        self._rang[event.linkedid].add(event.agent)
        await self._state_to_rung(
            event.linkedid,
            {
                "linkedid": event.linkedid,
                "state": "up",
                "agent": event.agent,
                "answered_at": event.answered_at.isoformat(),
            },
        )

    async def _held(self, event: CallHeld) -> None:
        await self._state_to_rung(event.linkedid, {"linkedid": event.linkedid, "state": "held", "agent": event.agent})

    async def _resumed(self, event: CallResumed) -> None:
        await self._state_to_rung(event.linkedid, {"linkedid": event.linkedid, "state": "up", "agent": event.agent})

    async def _transferred(self, event: CallTransferred) -> None:
        await self._state_to_rung(
            event.linkedid,
            {
                "linkedid": event.linkedid,
                "state": "transferred",
                "agent": event.from_agent,
                "target": event.target,
                "kind": event.kind.value,
            },
        )

    async def _ended(self, event: CallEnded) -> None:
        data = {
            "linkedid": event.linkedid,
            "state": "ended",
            "agent": event.agent,
            "outcome": event.outcome.value,
            "talk_seconds": round(event.talk_seconds, 1),
            "wrapup_seconds": self._wrapup,
        }
        await self._state_to_rung(event.linkedid, data)
        self._rang.pop(event.linkedid, None)
        await self._emit_supervisors(
            "call_ended", {"linkedid": event.linkedid, "outcome": event.outcome.value, "queue": event.queue}
        )

    async def _agent_state(self, event: AgentStateChanged) -> None:
        if not (self._listening(agent_room(event.agent), AGENT_NAMESPACE) or self._supervisors_listening()):
            return  # nobody to tell: not even the payload is built (every call changes two agents' states)
        data = plain(event)
        await self._emit_agent(event.agent, "agent_state", data)
        await self._emit_supervisors("agent_state", data)

    async def _keyword_heard(self, event: KeywordHeard) -> None:
        """A supervisors' phrase in a call's transcript: the flagged call goes to the wallboards."""
        await self._emit_supervisors("keyword_heard", plain(event))

    async def _queue_stats(self, event: QueueStatsChanged) -> None:
        if self._supervisors_listening():
            await self._emit_supervisors("queue_stats", plain(event))

    async def _sms(self, event: SmsReceived | SmsStatusChanged) -> None:
        """A text came in, or an outbound one moved on: every agent's SMS inbox (the conversations are staff-wide)
        refreshes. The room None is python-socketio's room of every client of the namespace."""
        name = "sms_received" if isinstance(event, SmsReceived) else "sms_status"
        data = plain(event)
        if isinstance(event, SmsReceived):
            data["body"] = event.body[:160]
        await self._send(None, AGENT_NAMESPACE, name, data)  # type: ignore[arg-type]

    def _supervisors_listening(self) -> bool:
        return self._listening(supervisors_room(), SUPERVISOR_NAMESPACE)

    def _listening(self, room: str, namespace: str) -> bool:
        """Whether anyone is in the room; always True through Redis, where the rooms live in other processes."""
        return self._local is None or bool(self._local.rooms.get(namespace, {}).get(room))

    def _wrapped_up(self, event: CallWrappedUp) -> None:
        end = getattr(self._pbx, "end_wrap_up", None)
        if event.agent and end is not None:
            end(event.agent)

    # --- state re-sent after a (re)connect --------------------------------------------------------------------

    def snapshot(self) -> PbxSnapshot | None:
        return self._pbx.snapshot() if self._pbx is not None else None

    def capabilities(self) -> list[str]:
        """The commands the PBX adapter can carry out (none without a PBX)."""
        if self._pbx is None:
            return []
        known = getattr(self._pbx, "capabilities", None)  # no snapshot needed when the adapter says so itself
        if known is None:
            known = self._pbx.snapshot().capabilities
        return sorted(str(c) for c in known)

    async def resend_to_agent(self, sid: str, agent: str) -> None:
        """After a browser (re)connects: its agent state, and a pop for every call still ringing it or up with it."""
        forward = getattr(self._pbx, "forward_resend", None)
        if forward is not None:  # a web-only worker: the CTI process holds the live state and sends it
            await forward("resend_to_agent", sid, agent)
            return
        # first what the PBX lets the desktop do: a control it cannot carry out is not shown
        await self._send(sid, AGENT_NAMESPACE, "capabilities", {"commands": self.capabilities()})
        tracker = getattr(self._pbx, "tracker", None)
        if tracker is not None and hasattr(tracker, "agent_view"):
            status, calls = tracker.agent_view(agent)  # this agent only: a thousand agents reconnect at once
        else:
            snapshot = self.snapshot()
            if snapshot is None:
                return
            status = next((a for a in snapshot.agents if a.agent == agent), None)
            calls = [c for c in snapshot.calls if agent in c.ringing_agents or c.agent == agent]
        if status is not None:
            await self._send(
                sid,
                AGENT_NAMESPACE,
                "agent_state",
                plain(status) | {"changed_at": status.since.isoformat()},
            )
        for call in calls:
            pop = await self._pops.current(call.linkedid) or {
                "linkedid": call.linkedid,
                "number": call.caller_number,
                "caller_name": call.caller_name,
                "queue": call.queue,
                "customer": None,
                "ivr": [{"name": k, "label": k, "value": v} for k, v in call.crm_vars],
            }
            # the same way as the live messages, so that these stay in order with them
            resent = {**pop, "agent": agent, "direction": call.direction.value, "resent": True}
            await self._send(sid, AGENT_NAMESPACE, "pop", self._with_commands(call.linkedid, resent))
            await self._send(
                sid,
                AGENT_NAMESPACE,
                "call_state",
                {"linkedid": call.linkedid, "state": call.state.value, "agent": call.agent},
            )
            self._rang[call.linkedid].add(agent)

    async def resend_to_supervisor(self, sid: str) -> None:
        forward = getattr(self._pbx, "forward_resend", None)
        if forward is not None and await forward("resend_to_supervisor", sid):
            return
        snapshot = self.snapshot()
        data = (
            plain(snapshot) if snapshot is not None else {"connected": False, "calls": [], "agents": [], "queues": []}
        )
        await self._send(sid, SUPERVISOR_NAMESPACE, "snapshot", data)
