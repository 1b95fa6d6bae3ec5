"""The Asterisk adapter: AMI connection → normalise → track → domain events on the bus; commands as AMI actions."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from crm_core.bus import EventBus
from crm_core.calls.events import AgentState, IvrVariablesSet
from cti_bridge import commands
from cti_bridge.adapter import (
    Capability,
    CommandError,
    CommandErrorCode,
    CommandResult,
    PbxSnapshot,
    SpyMode,
)
from cti_bridge.ami import AmiConnection, AmiEndpoint, AmiError, AmiUnreachable, Frames
from cti_bridge.normalize import (
    ChannelReported,
    PbxEvent,
    QueueEntryReported,
    QueueMemberChanged,
    QueueParamsReported,
    normalize,
    tracked_events_filter,
)
from cti_bridge.tracker import WRAP_UP_REASON, CallTracker

log = logging.getLogger(__name__)

_RESYNC = "resync"
# the AMI actions each capability needs (their classes: Originate `originate`; Park, Hangup, transfers `call`;
# queue membership and pause `agent`)
_NEEDS: dict[Capability, frozenset[str]] = {
    Capability.DIAL: frozenset({"Originate"}),
    Capability.HANGUP: frozenset({"Hangup"}),
    Capability.BLIND_TRANSFER: frozenset({"BlindTransfer"}),
    Capability.ATTENDED_TRANSFER: frozenset({"Atxfer"}),
    Capability.HOLD: frozenset({"Park", "Originate"}),
    Capability.QUEUE_LOGIN: frozenset({"QueueAdd", "QueueRemove"}),
    Capability.PAUSE: frozenset({"QueuePause"}),
    Capability.SPY: frozenset({"Originate"}),
}
_TRACKER_CALL = "tracker call"  # a change the CRM makes to the live model (wrap-up over), in order with the frames


def _now() -> datetime:
    return datetime.now(UTC)


class AsteriskAdapter:
    """A PbxAdapter for Asterisk over AMI. One supervised task drains the frames the connection receives."""

    # hold is Park and resume an Originate into the parking space (Asterisk has no hold action)
    capabilities: frozenset[Capability] = frozenset(Capability)

    def __init__(
        self,
        endpoint: AmiEndpoint,
        bus: EventBus,
        *,
        service_level_seconds: int = 20,
        wrapup_seconds: float = 0.0,
        ping_interval: float = 20.0,
        action_timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], datetime] = _now,
        ssl_context: ssl.SSLContext | None = None,
        event_filter: bool = True,
    ) -> None:
        self._bus = bus
        self._event_filter = event_filter
        self.event_filter_active = False
        self._pending: list[object] = []
        self.tracker = CallTracker(
            self._pending.append,
            service_level_seconds=service_level_seconds,
            wrapup_seconds=wrapup_seconds,
            clock=clock,
            pause_pbx=self._wrap_up_pause,
        )
        self._wrap_up_sends: asyncio.Task[None] | None = None  # the last wrap-up (un)pause, chained in order
        self._inbox: asyncio.Queue[Frames | tuple[str, asyncio.Future[None]] | tuple[str, Callable[[], None]]] = (
            asyncio.Queue()
        )
        self.connection = AmiConnection(
            endpoint,
            on_frames=self._inbox.put_nowait,
            on_login=self._resync_after_login,
            on_lost=self._lost,
            ping_interval=ping_interval,
            action_timeout=action_timeout,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            ssl_context=ssl_context,
        )
        self._consumer: asyncio.Task[None] | None = None
        self.current_chunk_arrived_ns = 0  # when the frames being processed arrived (bench: frame → pop)
        self.resyncs = 0
        self.frames_processed = 0
        self.resynced = asyncio.Event()
        self.capabilities = frozenset(Capability)  # until ListCommands says otherwise, at each login
        # every typed PBX event, unknown ones included (UserEvents from a dialplan, say), for who wants them
        self.on_pbx_event: Callable[[PbxEvent], None] | None = None

    # --- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._bus.subscribe(IvrVariablesSet, self._ivr_variables)
        self._consumer = asyncio.create_task(self._consume(), name="cti-bridge")
        self.connection.start()

    async def stop(self) -> None:
        if self._wrap_up_sends is not None:
            self._wrap_up_sends.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._wrap_up_sends
        await self.connection.stop()
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer = None

    def _lost(self) -> None:
        self.resynced.clear()
        log.warning("lost the AMI connection; live state is frozen until the resync")

    async def _resync_after_login(self) -> None:
        await self._learn_capabilities()
        if self._event_filter:
            await self._filter_events()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait((_RESYNC, done))
        await done

    async def _learn_capabilities(self) -> None:
        """What this AMI user may do: Asterisk's ListCommands lists only the actions its `write` classes allow. A
        control whose action is refused is not offered (and start-up says which and why)."""
        try:
            answer = await self.connection.action({"Action": "ListCommands"})
        except AmiError as exc:
            answer = {"Message": str(exc)}
        if answer.get("Response") != "Success":
            log.warning("could not list the AMI actions allowed (%s); offering every command", answer.get("Message"))
            return
        allowed = set(answer)
        self.capabilities = frozenset(c for c, actions in _NEEDS.items() if actions <= allowed)
        missing = sorted({a for actions in _NEEDS.values() for a in actions} - allowed)
        if missing:
            log.warning(
                "the AMI user may not use %s: %s not offered. Give it write = call,agent,originate (and system "
                "for the event filter)",
                ", ".join(missing),
                ", ".join(sorted(c.value for c in set(Capability) - self.capabilities)),
            )

    def _require(self, capability: Capability) -> None:
        if capability not in self.capabilities:
            raise CommandError(
                CommandErrorCode.NOT_SUPPORTED, f"The PBX does not let the CRM {capability.value.replace('_', ' ')}."
            )

    async def _filter_events(self) -> None:
        """Ask the PBX for the events the tracker follows only: the recorded answered queue call is 265 AMI events,
        of which the tracker needs 44 (VarSet alone is 115). A PBX that refuses (the AMI user lacks the `system`
        write permission, or it is not an Asterisk) still works: the bridge then reads everything."""
        try:
            answer = await self.connection.action(commands.event_filter(tracked_events_filter()))
        except AmiError as exc:
            answer = {"Message": str(exc)}
        self.event_filter_active = answer.get("Response") == "Success"
        if not self.event_filter_active:
            log.warning(
                "the PBX refused the AMI event filter (%s); reading all events. Give the AMI user write=system "
                "or set CRM_AMI_EVENT_FILTER=false",
                answer.get("Message", "no reason"),
            )

    async def _consume(self) -> None:
        while True:
            item = await self._inbox.get()
            if item[0] == _TRACKER_CALL:
                change = item[1]
                assert callable(change)
                try:
                    change()
                except Exception:
                    log.exception("could not change the live model")
                if self._pending:
                    await self._flush()
                continue
            if len(item) == 2 and item[0] == _RESYNC:
                done = item[1]
                assert isinstance(done, asyncio.Future)
                try:
                    await self._resync()
                except Exception as exc:  # the connection drops and the next login resyncs again
                    if not done.done():
                        done.set_exception(exc)
                else:
                    if not done.done():
                        done.set_result(None)
                continue
            arrived, frames = item
            assert isinstance(frames, list)
            self.current_chunk_arrived_ns = int(arrived)
            for headers in frames:
                self.frames_processed += 1
                try:
                    event = normalize(headers)
                    self.tracker.apply(event)
                    if self.on_pbx_event is not None:
                        self.on_pbx_event(event)
                except Exception:
                    # a frame the tracker cannot follow must never stop the bridge
                    log.exception("could not track %s", headers.get("Event"))
                if self._pending:
                    await self._flush()

    async def _flush(self) -> None:
        pending = self._pending[:]
        self._pending.clear()
        for domain_event in pending:
            await self._bus.publish(domain_event)

    async def _resync(self) -> None:
        channels: dict[str, ChannelReported] = {}
        for headers in await self.connection.action_list({"Action": "CoreShowChannels"}):
            event = normalize(headers)
            if isinstance(event, ChannelReported):
                channels[event.uniqueid] = event
        for headers in await self.connection.action_list({"Action": "Status"}):
            event = normalize(headers)
            if isinstance(event, ChannelReported):
                channels.setdefault(event.uniqueid, event)
        members: list[QueueMemberChanged] = []
        entries: list[QueueEntryReported] = []
        params: list[QueueParamsReported] = []
        for headers in await self.connection.action_list({"Action": "QueueStatus"}):
            event = normalize(headers)
            if isinstance(event, QueueMemberChanged):
                members.append(event)
            elif isinstance(event, QueueEntryReported):
                entries.append(event)
            elif isinstance(event, QueueParamsReported):
                params.append(event)
        for headers in await self.connection.action_list({"Action": "QueueSummary"}):
            if headers.get("Event") == "QueueSummary" and headers.get("Queue"):
                self.tracker._queue(headers["Queue"])  # a queue with nobody in it is still a queue to show
        self.tracker.resync(list(channels.values()), members, entries, params)
        self.resyncs += 1
        await self._flush()
        self.resynced.set()
        log.info("resynced with the PBX: %d live calls, %d agents", len(self.tracker.calls), len(self.tracker.agents))

    # --- PbxAdapter -------------------------------------------------------------------------------------------

    def snapshot(self) -> PbxSnapshot:
        snapshot = self.tracker.snapshot(connected=self.connection.connected.is_set())
        return dataclasses.replace(snapshot, capabilities=self.capabilities)

    async def _run(self, command: str, fields: dict[str, str]) -> CommandResult:
        try:
            answer = await self.connection.action(fields)
        except AmiUnreachable as exc:
            raise CommandError(CommandErrorCode.PBX_UNREACHABLE, f"The PBX cannot be reached ({exc}).") from None
        except AmiError as exc:
            raise CommandError(CommandErrorCode.REJECTED, str(exc)) from None
        return commands.check(command, answer)

    def _agent_channel(self, linkedid: str, agent: str) -> str:
        call = self.tracker.calls.get(linkedid)
        if call is None:
            raise CommandError(CommandErrorCode.CALL_NOT_FOUND, "That call has ended.")
        for leg in reversed(list(call.legs.values())):
            if leg.agent == agent and leg.ended_at is None:
                return leg.channel
        raise CommandError(CommandErrorCode.CHANNEL_GONE, f"Agent {agent} is not on that call any more.")

    def _require_logged_in(self, agent: str) -> None:
        known = self.tracker.agents.get(agent)
        if known is None or known.state is AgentState.LOGGED_OUT:
            raise CommandError(CommandErrorCode.AGENT_NOT_LOGGED_IN, f"Agent {agent} is not logged in.")

    async def dial(self, agent: str, number: str, *, caller_id: str | None = None) -> CommandResult:
        self._require(Capability.DIAL)
        fields = commands.originate_dial(agent, number, caller_id)
        self._require_logged_in(agent)
        return await self._run("dial", fields)

    async def hangup(self, linkedid: str, *, agent: str | None = None) -> CommandResult:
        call = self.tracker.calls.get(linkedid)
        if call is None:
            raise CommandError(CommandErrorCode.CALL_NOT_FOUND, "That call has ended.")
        if agent is not None:
            channel = self._agent_channel(linkedid, agent)
        else:
            known = self.tracker.channels.get(call.caller_uniqueid or call.linkedid)
            if known is None:
                raise CommandError(CommandErrorCode.CHANNEL_GONE, "The caller already hung up.")
            channel = known[1]
        return await self._run("hangup", commands.hangup(channel))

    async def blind_transfer(self, linkedid: str, agent: str, target: str) -> CommandResult:
        self._require(Capability.BLIND_TRANSFER)
        target = self._target(target)
        return await self._run("blind transfer", commands.blind_transfer(self._agent_channel(linkedid, agent), target))

    async def attended_transfer(self, linkedid: str, agent: str, target: str) -> CommandResult:
        self._require(Capability.ATTENDED_TRANSFER)
        target = self._target(target)
        channel = self._agent_channel(linkedid, agent)
        return await self._run("attended transfer", commands.attended_transfer(channel, target))

    @staticmethod
    def _target(target: str) -> str:
        # an agent extension, a queue name (the `internal` context routes both), or an outside number
        target = target.strip()
        if target.startswith("+") or target.replace(" ", "").isdigit():
            return commands.check_number(target).lstrip("+")
        return commands.check_queue(target)

    async def hold(self, linkedid: str, agent: str) -> CommandResult:
        """Park the caller (recorded in tests/fixtures/ami/hold_park.ami); the agent's own channel ends, the call
        and the agent's leg go on, and after the park timeout the PBX rings the agent back."""
        self._require(Capability.HOLD)
        call = self.tracker.calls.get(linkedid)
        if call is None:
            raise CommandError(CommandErrorCode.CALL_NOT_FOUND, "That call has ended.")
        if call.parked_space is not None:
            raise CommandError(CommandErrorCode.INVALID, "That call is already on hold.")
        agent_channel = self._agent_channel(linkedid, agent)
        if call.agent != agent or call.answered_at is None or call.caller_uniqueid is None:
            raise CommandError(CommandErrorCode.INVALID, "Only a queue call you are talking on can be put on hold.")
        caller = self.tracker.channels.get(call.caller_uniqueid)
        if caller is None:
            raise CommandError(CommandErrorCode.CHANNEL_GONE, "The caller already hung up.")
        return await self._run("hold", commands.park(caller[1], agent_channel))

    async def resume(self, linkedid: str, agent: str) -> CommandResult:
        """Ring the agent's device into the parking space: the call goes on, as one call, with the hold counted."""
        self._require(Capability.HOLD)
        call = self.tracker.calls.get(linkedid)
        if call is None:
            raise CommandError(CommandErrorCode.CALL_NOT_FOUND, "That call has ended.")
        if call.parked_space is None:
            raise CommandError(CommandErrorCode.INVALID, "That call is not on hold.")
        if call.parked_by not in (agent, None):
            raise CommandError(CommandErrorCode.INVALID, f"Agent {call.parked_by} holds that call.")
        fields = commands.pickup(agent, call.parked_space)
        self.tracker.expect_pickup(agent, linkedid)  # before sending: its first events may beat the answer
        try:
            return await self._run("resume", fields)
        except CommandError:
            self.tracker.cancel_pickup(agent)
            raise

    async def queue_login(self, agent: str, queue: str) -> CommandResult:
        return await self._run("queue login", commands.queue_add(agent, queue))

    async def queue_logout(self, agent: str, queue: str) -> CommandResult:
        return await self._run("queue logout", commands.queue_remove(agent, queue))

    async def pause(self, agent: str, reason: str, *, queue: str | None = None) -> CommandResult:
        fields = commands.queue_pause(agent, True, reason, queue)
        self._require_logged_in(agent)
        result = await self._run("pause", fields)
        self.tracker.pause_accepted(agent, True, fields.get("Reason", ""), queue)
        return result

    async def unpause(self, agent: str, *, queue: str | None = None) -> CommandResult:
        fields = commands.queue_pause(agent, False, "", queue)
        self._require_logged_in(agent)
        result = await self._run("unpause", fields)
        self.tracker.pause_accepted(agent, False, "", queue)
        return result

    async def spy(self, supervisor_extension: str, agent: str, mode: SpyMode) -> CommandResult:
        fields = commands.spy(supervisor_extension, agent, mode)
        known = self.tracker.agents.get(agent)
        if known is None or known.linkedid is None:
            raise CommandError(CommandErrorCode.CALL_NOT_FOUND, f"Agent {agent} is not on a call.")
        return await self._run(f"{mode.value}", fields)

    def end_wrap_up(self, agent: str) -> None:
        """The agent saved the disposition: wrap-up ends now (in the bridge's task, so its events are published)."""
        self._inbox.put_nowait((_TRACKER_CALL, lambda: self.tracker.end_wrap_up(agent)))

    def _ivr_variables(self, event: IvrVariablesSet) -> None:
        """What the product's IVR told over the bus joins the call in the bridge's task, in order with the frames."""
        self._inbox.put_nowait((_TRACKER_CALL, lambda: self.tracker.ivr_variables(event.uniqueid, event.variables)))

    def _wrap_up_pause(self, agent: str, queue: str, paused: bool) -> None:
        """The tracker asks for the wrap-up pause (or its end): sent in the order asked, after what went before."""
        previous = self._wrap_up_sends
        self._wrap_up_sends = asyncio.get_running_loop().create_task(
            self._send_wrap_up_pause(previous, agent, queue, paused), name=f"wrap-up-pause-{agent}"
        )

    async def _send_wrap_up_pause(
        self, previous: asyncio.Task[None] | None, agent: str, queue: str, paused: bool
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        command = "wrap-up pause" if paused else "end of wrap-up"
        try:
            await self._run(command, commands.queue_pause(agent, paused, WRAP_UP_REASON, queue))
        except CommandError as exc:
            # the agent left the queue meanwhile, or the PBX is away (the resync lifts a stale wrap-up pause)
            log.warning("%s of agent %s in queue %s not done: %s", command, agent, queue, exc.detail)


def describe(adapter: Any) -> dict[str, Any]:
    """Health figures for the status page."""
    connection = getattr(adapter, "connection", None)
    return {
        "connected": bool(connection and connection.connected.is_set()),
        "last_error": getattr(connection, "last_error", None),
        "resyncs": getattr(adapter, "resyncs", 0),
    }
