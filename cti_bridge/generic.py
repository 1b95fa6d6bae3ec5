"""The generic CTI adapter: call events a TAPI-style PBX gateway pushes over HTTP, in the shape of Zammad's generic
CTI push API (`newCall`, `answer`, `hangup`), become the same domain events as Asterisk's; click-to-dial calls the
gateway's dial URL. Pure of the web: the HTTP edge (agent_desktop.routes.integrations) parses the request into a
field mapping, resolves PBX user names to agent extensions, and hands both to `GenericCtiAdapter.push`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import aiohttp
import phonenumbers

from crm_core.bus import EventBus
from crm_core.calls.events import (
    AgentRinging,
    AgentState,
    AgentStateChanged,
    CallAnswered,
    CallDirection,
    CallEnded,
    CallLegSummary,
    CallOffered,
    CallOutcome,
    CallStarted,
    QueueStatsChanged,
)
from crm_core.customers.phones import caller_id_to_e164
from cti_bridge.adapter import (
    AgentStatus,
    CallState,
    Capability,
    CommandError,
    CommandErrorCode,
    CommandResult,
    LiveCall,
    PbxSnapshot,
    SpyMode,
)
from cti_bridge.commands import check_extension, check_number
from cti_bridge.tracker import QueueTally, queue_stats_event

log = logging.getLogger(__name__)

PBX_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,19}")
MAX_CALL_ID = 250  # Zammad's limit
MAX_USERS = 50
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NUMBER_PUNCTUATION = re.compile(r"[\s/().\-]")
_WITHHELD = frozenset({"anonymous", "unknown", "withheld", "restricted", "private", ""})
# Zammad's hangup causes, as Q.850 cause codes where there is one (the call log keeps a number)
HANGUP_CAUSES: dict[str, int | None] = {
    "normalClearing": 16,
    "busy": 17,
    "noAnswer": 19,
    "cancel": 16,
    "congestion": 34,
    "notFound": 1,
    "forwarded": None,
}
REMEMBER_ENDED = 10_000  # ended callIds kept to answer repeats and late events without a second call log


class CtiEventKind(StrEnum):
    NEW_CALL = "newCall"
    ANSWER = "answer"
    HANGUP = "hangup"


class CtiErrorCode(StrEnum):
    INVALID = "invalid_event"
    UNKNOWN_CALL = "unknown_call"


class GenericCtiError(Exception):
    """A pushed event the adapter refuses: `code` is stable, `message` one sentence naming the field."""

    def __init__(self, code: CtiErrorCode, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    @property
    def http_status(self) -> int:
        return 404 if self.code is CtiErrorCode.UNKNOWN_CALL else 400

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.field:
            body["details"] = {"field": self.field}
        return body


@dataclass(frozen=True, slots=True)
class CtiEvent:
    """One pushed event, checked; numbers still as the PBX wrote them."""

    kind: CtiEventKind
    call_id: str
    direction: CallDirection
    from_number: str = ""
    to_number: str = ""
    users: tuple[str, ...] = ()
    queue: str | None = None
    answering_number: str | None = None
    cause: str | None = None


def _invalid(message: str, name: str) -> GenericCtiError:
    return GenericCtiError(CtiErrorCode.INVALID, message, field=name)


def _text(fields: Mapping[str, Any], name: str, limit: int, *, required: bool = False) -> str | None:
    value = fields.get(name)
    if isinstance(value, list | tuple):
        if len(value) > 1:
            raise _invalid(f"'{name}' is given {len(value)} times; give it once.", name)
        value = value[0] if value else None
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _invalid(f"'{name}' is missing.", name)
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _invalid(f"'{name}' must be text.", name)
    text = str(value).strip()
    if len(text) > limit:
        raise _invalid(f"'{name}' is longer than {limit} chars.", name)
    if _CONTROL.search(text):
        raise _invalid(f"'{name}' contains a control character.", name)
    return text


def _users(fields: Mapping[str, Any]) -> tuple[str, ...]:
    """`user[]` (form data, once per user) or `user` (JSON: a string or a list)."""
    found: list[Any] = []
    for name in ("user[]", "user"):
        value = fields.get(name)
        if value is None:
            continue
        found.extend(value if isinstance(value, list | tuple) else [value])
    if len(found) > MAX_USERS:
        raise _invalid(f"'user' names more than {MAX_USERS} users.", "user")
    users: list[str] = []
    for value in found:
        if not isinstance(value, str):
            raise _invalid("Each 'user' must be text.", "user")
        name = value.strip()
        if len(name) > 200:
            raise _invalid("A 'user' is longer than 200 characters.", "user")
        if _CONTROL.search(name):
            raise _invalid("A 'user' contains a control character.", "user")
        if name and name not in users:
            users.append(name)
    return tuple(users)


def parse_event(fields: Mapping[str, Any]) -> CtiEvent:
    """Check a pushed event (form fields as lists, or a JSON object); GenericCtiError(INVALID) says what is wrong."""
    kind_text = _text(fields, "event", 20, required=True) or ""
    try:
        kind = CtiEventKind(kind_text)
    except ValueError:
        raise _invalid("'event' must be newCall, answer or hangup.", "event") from None
    call_id = _text(fields, "callId", MAX_CALL_ID, required=True) or ""
    direction_text = _text(fields, "direction", 8, required=kind is CtiEventKind.NEW_CALL)
    if direction_text not in (None, "in", "out"):
        raise _invalid("'direction' must be in or out.", "direction")
    return CtiEvent(
        kind=kind,
        call_id=call_id,
        direction=CallDirection.OUTBOUND if direction_text == "out" else CallDirection.INBOUND,
        from_number=_text(fields, "from", 40) or "",
        to_number=_text(fields, "to", 40) or "",
        users=_users(fields),
        queue=_text(fields, "queue", 64),
        answering_number=_text(fields, "answeringNumber", 200),
        cause=_text(fields, "cause", 64),
    )


# --- numbers --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NumberPlan:
    """How one PBX writes numbers: its region (national numbers), and a prefix it puts before outside numbers."""

    region: str = "US"
    outside_prefix: str = ""

    def to_e164(self, raw: str) -> str | None:
        """E.164 of a number as the PBX wrote it (`+49 30/555-71600`, `030 55571600`, `493055571600`,
        `0049 30 555 71600`, with the outside-line prefix); None for withheld or internal numbers. Remembered per
        plan and number: a newCall asks it four times on the pop's path (its pop, a blocked caller twice, the call),
        and a phonenumbers parse costs ~50 µs."""
        return _to_e164(self, raw)

    def read(self, raw: str) -> str | None:
        """`to_e164` without the memory."""
        text = raw.strip()
        if text.lower() in _WITHHELD:
            return None
        compact = _NUMBER_PUNCTUATION.sub("", text)
        if not compact.lstrip("+").isdigit():
            return None
        readings = [compact]
        if self.outside_prefix and compact.startswith(self.outside_prefix) and not compact.startswith("+"):
            stripped = compact[len(self.outside_prefix) :]
            # only when what remains is a full number (national or international), not a short extension
            if stripped.startswith(("0", "+")) or len(stripped) > 8:
                readings.append(stripped)
        for reading in readings:  # the first reading that is a number in use: 0049… before 0 + 049…
            found = self._valid(reading)
            if found is not None:
                return found
        return caller_id_to_e164(readings[-1], self.region)

    def _valid(self, compact: str) -> str | None:
        candidates = []
        if compact.startswith("00"):
            candidates.append("+" + compact[2:])
        elif compact.startswith("+"):
            candidates.append(compact)
        else:
            country = str(phonenumbers.country_code_for_region(self.region))
            if not compact.startswith("0") and compact.startswith(country) and len(compact) >= 10:
                candidates.append("+" + compact)  # E.164 without its plus, as Zammad's examples write numbers
            candidates.append(compact)
        for candidate in candidates:
            try:
                parsed = phonenumbers.parse(candidate, self.region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(parsed):
                return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        return None


@lru_cache(maxsize=16_384)
def _to_e164(plan: NumberPlan, raw: str) -> str | None:
    return plan.read(raw)


def customer_number(event: CtiEvent, numbers: NumberPlan) -> str:
    """The customer's side of a newCall (the caller inbound, the number dialled outbound): E.164 when it can be
    read, "" when withheld, else as written."""
    raw = event.from_number if event.direction is CallDirection.INBOUND else event.to_number
    return numbers.to_e164(raw) or ("" if raw.lower() in _WITHHELD else raw)


# --- the live model -------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def linkedid_for(pbx: str, call_id: str) -> str:
    """The call's id in the CRM: the PBX's name and its callId (hashed when too long for a call log's key)."""
    linkedid = f"{pbx}:{call_id}"
    if len(linkedid) <= 64:
        return linkedid
    return f"{pbx}:h-{hashlib.sha256(call_id.encode()).hexdigest()[:40]}"


@dataclass
class _Call:
    linkedid: str
    direction: CallDirection
    offered_at: datetime
    customer_number: str  # E.164 when it could be read, else as written
    line_number: str  # our side: the number called (inbound) or the agent's line (outbound)
    queue: str | None
    rung: dict[str, datetime] = field(default_factory=dict)  # agent -> when it rang
    agent: str | None = None
    answered_at: datetime | None = None


@dataclass
class _Agent:
    state: AgentState = AgentState.AVAILABLE
    since: datetime = field(default_factory=_now)
    linkedid: str | None = None
    calls_today: int = 0


class Applied(StrEnum):
    """What an event did: changed the call, or repeated what was known (answered alike, nothing written twice)."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    ALREADY_ENDED = "already_ended"


class GenericCallTracker:
    """Calls by callId, agents by extension, queue figures; domain events to `emit` in the order they happen."""

    def __init__(
        self,
        emit: Callable[[object], None],
        *,
        pbx: str,
        numbers: NumberPlan,
        service_level_seconds: int = 20,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._emit = emit
        self.pbx = pbx
        self.numbers = numbers
        self._sl = service_level_seconds
        self._clock = clock
        self.calls: dict[str, _Call] = {}
        self.ended: OrderedDict[str, None] = OrderedDict()
        self.agents: dict[str, _Agent] = {}
        self.queues: dict[str, QueueTally] = {}
        self.members: dict[str, set[str]] = {}  # queue -> the CRM's agents of it (wallboard figures need them)

    def set_members(self, queue: str, agents: Iterable[str]) -> None:
        self.members[queue] = set(agents)
        self.queues.setdefault(queue, QueueTally(queue))

    def apply(self, event: CtiEvent, agents: tuple[str, ...]) -> Applied:
        """`agents`: the extensions the event's users (or, with none named, its queue) map to."""
        linkedid = linkedid_for(self.pbx, event.call_id)
        if event.kind is CtiEventKind.NEW_CALL:
            return self._new_call(linkedid, event, agents)
        call = self.calls.get(linkedid)
        if call is None:
            if linkedid in self.ended:
                return Applied.ALREADY_ENDED
            raise GenericCtiError(
                CtiErrorCode.UNKNOWN_CALL,
                f"No call with callId {event.call_id!r} is known: send its newCall first.",
                field="callId",
            )
        if event.kind is CtiEventKind.ANSWER:
            return self._answer(call, event, agents)
        return self._hangup(call, event)

    # --- events -------------------------------------------------------------------------------------------------

    def _new_call(self, linkedid: str, event: CtiEvent, agents: tuple[str, ...]) -> Applied:
        if linkedid in self.calls:
            return Applied.DUPLICATE
        if linkedid in self.ended:
            return Applied.ALREADY_ENDED
        now = self._clock()
        inbound = event.direction is CallDirection.INBOUND
        line = event.to_number if inbound else event.from_number
        customer = customer_number(event, self.numbers)
        call = _Call(linkedid, event.direction, now, customer, line, event.queue)
        self.calls[linkedid] = call
        self._emit(CallStarted(linkedid=linkedid, direction=event.direction, number=customer, name="", started_at=now))
        if inbound:
            self._emit(
                CallOffered(
                    linkedid=linkedid,
                    direction=event.direction,
                    caller_number=customer,
                    caller_name="",
                    callee_number=line,
                    queue=event.queue,
                    position=None,
                    offered_at=now,
                )
            )
            if event.queue:
                self._queue(event.queue).waiting[linkedid] = now
                self._queue_stats(event.queue, now)
            for agent in agents:
                self._ring(call, agent, now)
        else:
            # the agent placing the call is the "caller" of an outbound CallOffered, as with Asterisk's Originate
            origin = agents[0] if agents else ""
            call.agent = origin or None
            self._emit(
                CallOffered(
                    linkedid=linkedid,
                    direction=event.direction,
                    caller_number=origin,
                    caller_name="",
                    callee_number=customer,
                    queue=event.queue,
                    position=None,
                    offered_at=now,
                )
            )
            if origin:
                call.rung[origin] = now
                self._set_agent(origin, AgentState.ON_CALL, linkedid)
        return Applied.APPLIED

    def _ring(self, call: _Call, agent: str, now: datetime) -> None:
        call.rung[agent] = now
        self._emit(
            AgentRinging(
                linkedid=call.linkedid,
                agent=agent,
                agent_channel=f"{self.pbx}/{agent}",
                queue=call.queue,
                caller_number=call.customer_number,
                caller_name="",
                waited_seconds=0.0,
                rang_at=now,
                direction=call.direction,
            )
        )
        self._set_agent(agent, AgentState.RINGING, call.linkedid)

    def _answer(self, call: _Call, event: CtiEvent, agents: tuple[str, ...]) -> Applied:
        if call.answered_at is not None:
            return Applied.DUPLICATE
        now = self._clock()
        call.answered_at = now
        if call.direction is CallDirection.OUTBOUND:
            # the dialled number answered; the agent was on the call from the start (as Asterisk's far end answering)
            if call.agent is not None:
                self._emit(
                    CallAnswered(
                        linkedid=call.linkedid,
                        agent=call.agent,
                        queue=None,
                        answered_at=now,
                        wait_seconds=0.0,
                        ring_seconds=(now - call.offered_at).total_seconds(),
                    )
                )
            return Applied.APPLIED
        agent = agents[0] if agents else None
        if agent is not None and agent not in call.rung:
            call.rung[agent] = now  # answered by someone not rung (a pickup): a leg of theirs all the same
        call.agent = agent
        wait = (now - call.offered_at).total_seconds()
        if call.queue:
            queue = self._queue(call.queue)
            queue.waiting.pop(call.linkedid, None)
            queue.answered += 1
            queue.total_wait += wait
            if wait <= self._sl:
                queue.answered_in_time += 1
        if agent is not None:
            rang = call.rung.get(agent, now)
            self._emit(
                CallAnswered(
                    linkedid=call.linkedid,
                    agent=agent,
                    queue=call.queue,
                    answered_at=now,
                    wait_seconds=wait,
                    ring_seconds=(now - rang).total_seconds(),
                )
            )
            self._set_agent(agent, AgentState.ON_CALL, call.linkedid)
        for other in call.rung:
            if other != agent:
                self._idle(other, call.linkedid)
        if call.queue:
            self._queue_stats(call.queue, now)
        return Applied.APPLIED

    def _hangup(self, call: _Call, event: CtiEvent) -> Applied:
        now = self._clock()
        self.calls.pop(call.linkedid, None)
        self.ended[call.linkedid] = None
        while len(self.ended) > REMEMBER_ENDED:
            self.ended.popitem(last=False)
        cause = HANGUP_CAUSES.get(event.cause or "", None)
        inbound = call.direction is CallDirection.INBOUND
        if call.answered_at is not None:
            outcome = CallOutcome.ANSWERED
        elif not inbound:
            outcome = CallOutcome.FAILED
        elif call.queue or event.cause in (None, "cancel", "normalClearing"):
            outcome = CallOutcome.ABANDONED  # the caller gave up before anyone answered
        else:
            outcome = CallOutcome.MISSED  # the PBX gave up (no answer, busy): nobody took it
        talk = (now - call.answered_at).total_seconds() if call.answered_at is not None else 0.0
        wait = ((call.answered_at or now) - call.offered_at).total_seconds() if inbound else 0.0
        if call.queue:
            queue = self._queue(call.queue)
            if queue.waiting.pop(call.linkedid, None) is not None and call.answered_at is None:
                queue.abandoned += 1
            if call.answered_at is not None:
                queue.total_talk += talk
                queue.talked += 1
        legs = tuple(
            CallLegSummary(
                agent=agent,
                channel=f"{self.pbx}/{agent}",  # a leg's key in the call log: one per agent of this PBX
                queue=call.queue,
                rang_at=rang,
                answered_at=call.answered_at if agent == call.agent else None,
                ended_at=now,
            )
            for agent, rang in call.rung.items()
        )
        self._emit(
            CallEnded(
                linkedid=call.linkedid,
                direction=call.direction,
                outcome=outcome,
                caller_number=call.customer_number if inbound else (call.agent or call.line_number),
                caller_name="",
                callee_number=call.line_number if inbound else call.customer_number,
                queue=call.queue,
                agent=call.agent if (call.answered_at is not None or not inbound) else None,
                offered_at=call.offered_at,
                answered_at=call.answered_at,
                ended_at=now,
                wait_seconds=wait,
                talk_seconds=talk,
                hold_seconds=0.0,
                hangup_cause=cause,
                legs=legs,
            )
        )
        for agent in call.rung:
            self._idle(agent, call.linkedid)
        if call.queue:
            self._queue_stats(call.queue, now)
        return Applied.APPLIED

    # --- agents and queues ----------------------------------------------------------------------------------------

    def _idle(self, extension: str, linkedid: str) -> None:
        agent = self.agents.get(extension)
        if agent is not None and agent.linkedid == linkedid:
            if agent.state is AgentState.ON_CALL:
                agent.calls_today += 1
            self._set_agent(extension, AgentState.AVAILABLE, None)

    def _set_agent(self, extension: str, state: AgentState, linkedid: str | None) -> None:
        agent = self.agents.setdefault(extension, _Agent(since=self._clock()))
        if agent.state is state and agent.linkedid == linkedid:
            return
        agent.state, agent.linkedid, agent.since = state, linkedid, self._clock()
        queues = tuple(sorted(q for q, members in self.members.items() if extension in members))
        self._emit(
            AgentStateChanged(agent=extension, state=state, changed_at=agent.since, queues=queues, linkedid=linkedid)
        )

    def _queue(self, name: str) -> QueueTally:
        return self.queues.setdefault(name, QueueTally(name))

    def queue_stats(self, name: str, now: datetime | None = None) -> QueueStatsChanged:
        now = now or self._clock()
        queue = self._queue(name)
        members = self.members.get(name, set())
        counts = dict.fromkeys(AgentState, 0)
        for extension in members:
            counts[self.agents[extension].state if extension in self.agents else AgentState.AVAILABLE] += 1
        return queue_stats_event(queue, counts, len(members), now)

    def _queue_stats(self, name: str, now: datetime) -> None:
        self._emit(self.queue_stats(name, now))

    # --- views ----------------------------------------------------------------------------------------------------

    def live_call(self, call: _Call) -> LiveCall:
        if call.answered_at is not None:
            state = CallState.UP
        elif call.direction is CallDirection.OUTBOUND:
            state = CallState.RINGING
        else:
            state = CallState.RINGING if call.rung else CallState.QUEUED
        inbound = call.direction is CallDirection.INBOUND
        return LiveCall(
            linkedid=call.linkedid,
            direction=call.direction,
            state=state,
            caller_number=call.customer_number if inbound else (call.agent or ""),
            caller_name="",
            callee_number=call.line_number if inbound else call.customer_number,
            queue=call.queue,
            agent=call.agent if (call.answered_at is not None or not inbound) else None,
            ringing_agents=tuple(call.rung) if call.answered_at is None and inbound else (),
            offered_at=call.offered_at,
            answered_at=call.answered_at,
        )

    def status(self, extension: str) -> AgentStatus | None:
        agent = self.agents.get(extension)
        if agent is None:
            return None
        queues = tuple(sorted(q for q, members in self.members.items() if extension in members))
        return AgentStatus(
            agent=extension,
            state=agent.state,
            since=agent.since,
            queues=queues,
            linkedid=agent.linkedid,
            calls_today=agent.calls_today,
        )

    def agent_view(self, extension: str) -> tuple[AgentStatus | None, list[LiveCall]]:
        calls = [self.live_call(c) for c in self.calls.values() if extension in c.rung and c.agent in (None, extension)]
        return self.status(extension), calls


# --- the adapter ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GenericPbxConfig:
    """One generic PBX as settings describe it (the token is compared by the HTTP edge, not here)."""

    name: str
    numbers: NumberPlan = NumberPlan()
    dial_url: str | None = None  # e.g. https://gateway/dial?agent={agent}&number={number}; {caller_id} optional
    blocked_callers: frozenset[str] = frozenset()  # E.164 numbers whose calls the PBX is told to reject
    outbound_caller_id: str | None = None  # told to the PBX on an outbound newCall
    dial_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class PushAnswer:
    """What the HTTP edge replies: Zammad's body (`{}`, a reject, a caller ID) and how the event was taken."""

    body: dict[str, str]
    applied: Applied
    linkedid: str


class GenericCtiAdapter:
    """A PbxAdapter for a PBX that pushes generic CTI events. It can dial (through its gateway's URL), nothing
    else: every other command is NOT_SUPPORTED, and the desktop shows no control for it."""

    def __init__(
        self,
        config: GenericPbxConfig,
        bus: EventBus,
        *,
        service_level_seconds: int = 20,
        clock: Callable[[], datetime] = _now,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        if not PBX_NAME.fullmatch(config.name):
            raise ValueError(f"{config.name!r} is not a PBX name (a-z, 0-9, _ and -, up to 20)")
        self.config = config
        self.name = config.name
        self._bus = bus
        self._pending: list[object] = []
        self.tracker = GenericCallTracker(
            self._pending.append,
            pbx=config.name,
            numbers=config.numbers,
            service_level_seconds=service_level_seconds,
            clock=clock,
        )
        self.capabilities: frozenset[Capability] = frozenset({Capability.DIAL} if config.dial_url else ())
        self._lock = asyncio.Lock()
        self._http = http
        self._own_http = http is None
        self.events_received = 0
        self.last_event_at: datetime | None = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self._http is not None and self._own_http:
            await self._http.close()
            self._http = None

    def owns(self, linkedid: str) -> bool:
        return linkedid.startswith(f"{self.name}:")

    # --- events in ------------------------------------------------------------------------------------------------

    async def push(
        self,
        event: CtiEvent,
        agents: tuple[str, ...],
        *,
        queue_members: Iterable[str] | None = None,
    ) -> PushAnswer:
        """Apply one pushed event; its domain events are on the bus, in order, when this returns."""
        async with self._lock:  # the events of concurrent requests reach the bus in the order they were applied
            if event.queue and queue_members is not None:
                self.tracker.set_members(event.queue, queue_members)
            if self._blocked(event):
                agents = ()  # the PBX is told to reject it: logged, but nobody is rung
            try:
                applied = self.tracker.apply(event, agents)
            finally:
                pending = self._pending[:]
                self._pending.clear()
            self.events_received += 1
            self.last_event_at = _now()
            for domain_event in pending:
                await self._bus.publish(domain_event)
        linkedid = linkedid_for(self.name, event.call_id)
        return PushAnswer(self._answer_for(event, applied), applied, linkedid)

    def pop_number(self, event: CtiEvent) -> str | None:
        """For a newCall that will ring an agent: the number its screen pop is about, so that the pop can be built
        before the event is applied and the ring finds it ready, as an Asterisk call's pop is (built on CallStarted,
        seconds before AgentCalled). None for any other event, a repeat, a call already ended or a blocked caller."""
        if event.kind is not CtiEventKind.NEW_CALL or self._blocked(event):
            return None
        linkedid = linkedid_for(self.name, event.call_id)
        if linkedid in self.tracker.calls or linkedid in self.tracker.ended:
            return None
        return customer_number(event, self.config.numbers)

    def _blocked(self, event: CtiEvent) -> bool:
        if event.kind is not CtiEventKind.NEW_CALL or event.direction is not CallDirection.INBOUND:
            return False
        caller = self.config.numbers.to_e164(event.from_number)
        return caller is not None and caller in self.config.blocked_callers

    def _answer_for(self, event: CtiEvent, applied: Applied) -> dict[str, str]:
        if event.kind is not CtiEventKind.NEW_CALL or applied is Applied.ALREADY_ENDED:
            return {}
        if event.direction is CallDirection.INBOUND:
            return {"action": "reject", "reason": "busy"} if self._blocked(event) else {}
        if self.config.outbound_caller_id:
            # Zammad's documentation spells it both ways; connectors read one or the other
            return {
                "action": "dial",
                "caller_id": self.config.outbound_caller_id,
                "callerId": self.config.outbound_caller_id,
                "number": event.to_number,
            }
        return {}

    # --- PbxAdapter -----------------------------------------------------------------------------------------------

    def snapshot(self) -> PbxSnapshot:
        tracker = self.tracker
        return PbxSnapshot(
            connected=True,  # a pushing PBX has no connection of ours to lose
            calls=tuple(tracker.live_call(c) for c in tracker.calls.values()),
            agents=tuple(s for s in (tracker.status(a) for a in tracker.agents) if s is not None),
            queues=tuple(tracker.queue_stats(q) for q in sorted(tracker.queues)),
            taken_at=_now(),
            extra={"pbx": self.name, "kind": "generic"},
            capabilities=self.capabilities,
        )

    def _unsupported(self, what: str) -> CommandError:
        return CommandError(
            CommandErrorCode.NOT_SUPPORTED, f"The PBX {self.name} cannot {what} from the CRM (it only pushes events)."
        )

    def dial_url(self, agent: str, number: str, caller_id: str | None = None) -> str:
        template = self.config.dial_url
        if not template:
            raise self._unsupported("dial")
        values = {
            "agent": quote(check_extension(agent), safe=""),
            "number": quote(check_number(number), safe=""),
            "caller_id": quote(check_number(caller_id) if caller_id else "", safe=""),
        }
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):
            raise CommandError(
                CommandErrorCode.INVALID,
                f"The dial URL of PBX {self.name} has a placeholder other than "
                "{agent}, {number} and {caller_id}.",
            ) from None

    async def dial(self, agent: str, number: str, *, caller_id: str | None = None) -> CommandResult:
        url = self.dial_url(agent, number, caller_id)
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.dial_timeout_s))
        try:
            async with self._http.post(url) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CommandError(
                CommandErrorCode.PBX_UNREACHABLE,
                f"The dial gateway of PBX {self.name} cannot be reached ({type(exc).__name__}).",
            ) from None
        if status >= 400:
            raise CommandError(CommandErrorCode.REJECTED, f"The dial gateway of PBX {self.name} answered {status}.")
        return CommandResult("dial", reference=None)

    async def hangup(self, linkedid: str, *, agent: str | None = None) -> CommandResult:
        raise self._unsupported("hang up a call")

    async def blind_transfer(self, linkedid: str, agent: str, target: str) -> CommandResult:
        raise self._unsupported("transfer a call")

    async def attended_transfer(self, linkedid: str, agent: str, target: str) -> CommandResult:
        raise self._unsupported("transfer a call")

    async def hold(self, linkedid: str, agent: str) -> CommandResult:
        raise self._unsupported("hold a call")

    async def resume(self, linkedid: str, agent: str) -> CommandResult:
        raise self._unsupported("resume a call")

    async def queue_login(self, agent: str, queue: str) -> CommandResult:
        raise self._unsupported("log agents in to queues")

    async def queue_logout(self, agent: str, queue: str) -> CommandResult:
        raise self._unsupported("log agents out of queues")

    async def pause(self, agent: str, reason: str, *, queue: str | None = None) -> CommandResult:
        raise self._unsupported("pause agents")

    async def unpause(self, agent: str, *, queue: str | None = None) -> CommandResult:
        raise self._unsupported("unpause agents")

    async def spy(self, supervisor_extension: str, agent: str, mode: SpyMode) -> CommandResult:
        raise self._unsupported("listen in on calls")


# --- several PBXes at once -------------------------------------------------------------------------------------


class PbxSet:
    """Several named PBXes as one PbxAdapter: the primary (Asterisk, or the demo PBX) and generic ones. A call's
    command goes to the PBX that owns its linkedid (`<name>:<callId>` for generic PBXes); a dial goes to the agent's
    home PBX (`homes`, from the admin's PBX user mapping), else the primary."""

    def __init__(self, primary: Any, generic: Iterable[GenericCtiAdapter]) -> None:
        self.primary = primary
        self.generic: dict[str, GenericCtiAdapter] = {g.name: g for g in generic}
        self.homes: dict[str, str] = {}  # agent extension -> generic PBX name
        self.tracker = self  # the notifier's per-agent view (`tracker.agent_view`) spans every PBX

    @property
    def capabilities(self) -> frozenset[Capability]:
        known = getattr(self.primary, "capabilities", None)
        if known is not None:
            return frozenset(known)
        snapshot: PbxSnapshot = self.primary.snapshot()
        return snapshot.capabilities

    def adapter_for(self, linkedid: str) -> Any:
        for adapter in self.generic.values():
            if adapter.owns(linkedid):
                return adapter
        return self.primary

    def commands_for(self, linkedid: str) -> list[str] | None:
        """The commands of the PBX carrying this call, when they differ from the primary's (None: the same)."""
        adapter = self.adapter_for(linkedid)
        if adapter is self.primary:
            return None
        return sorted(str(c) for c in adapter.capabilities)

    def _home(self, agent: str) -> Any:
        name = self.homes.get(agent)
        return self.generic.get(name, self.primary) if name else self.primary

    async def start(self) -> None:
        for adapter in self.generic.values():
            await adapter.start()

    async def stop(self) -> None:
        for adapter in self.generic.values():
            await adapter.stop()

    def snapshot(self) -> PbxSnapshot:
        first: PbxSnapshot = self.primary.snapshot()
        calls, agents, queues = list(first.calls), list(first.agents), list(first.queues)
        for adapter in self.generic.values():
            snapshot = adapter.snapshot()
            calls += snapshot.calls
            agents += snapshot.agents
            queues += snapshot.queues
        return replace(first, calls=tuple(calls), agents=tuple(agents), queues=tuple(queues))

    def agent_view(self, extension: str) -> tuple[AgentStatus | None, list[LiveCall]]:
        tracker = getattr(self.primary, "tracker", None)
        if tracker is not None and hasattr(tracker, "agent_view"):
            status, calls = tracker.agent_view(extension)
        else:
            snapshot = self.primary.snapshot()
            status = next((a for a in snapshot.agents if a.agent == extension), None)
            calls = [c for c in snapshot.calls if extension in c.ringing_agents or c.agent == extension]
        calls = list(calls)
        for adapter in self.generic.values():
            generic_status, generic_calls = adapter.tracker.agent_view(extension)
            calls += generic_calls
            if generic_status is not None and (status is None or generic_status.linkedid is not None):
                status = generic_status
        return status, calls

    def end_wrap_up(self, agent: str) -> None:
        end = getattr(self.primary, "end_wrap_up", None)
        if end is not None:
            end(agent)

    async def dial(self, agent: str, number: str, *, caller_id: str | None = None) -> CommandResult:
        result: CommandResult = await self._home(agent).dial(agent, number, caller_id=caller_id)
        return result

    async def hangup(self, linkedid: str, *, agent: str | None = None) -> CommandResult:
        result: CommandResult = await self.adapter_for(linkedid).hangup(linkedid, agent=agent)
        return result

    async def blind_transfer(self, linkedid: str, agent: str, target: str) -> CommandResult:
        result: CommandResult = await self.adapter_for(linkedid).blind_transfer(linkedid, agent, target)
        return result

    async def attended_transfer(self, linkedid: str, agent: str, target: str) -> CommandResult:
        result: CommandResult = await self.adapter_for(linkedid).attended_transfer(linkedid, agent, target)
        return result

    async def hold(self, linkedid: str, agent: str) -> CommandResult:
        result: CommandResult = await self.adapter_for(linkedid).hold(linkedid, agent)
        return result

    async def resume(self, linkedid: str, agent: str) -> CommandResult:
        result: CommandResult = await self.adapter_for(linkedid).resume(linkedid, agent)
        return result

    async def queue_login(self, agent: str, queue: str) -> CommandResult:
        result: CommandResult = await self._home(agent).queue_login(agent, queue)
        return result

    async def queue_logout(self, agent: str, queue: str) -> CommandResult:
        result: CommandResult = await self._home(agent).queue_logout(agent, queue)
        return result

    async def pause(self, agent: str, reason: str, *, queue: str | None = None) -> CommandResult:
        result: CommandResult = await self._home(agent).pause(agent, reason, queue=queue)
        return result

    async def unpause(self, agent: str, *, queue: str | None = None) -> CommandResult:
        result: CommandResult = await self._home(agent).unpause(agent, queue=queue)
        return result

    async def spy(self, supervisor_extension: str, agent: str, mode: SpyMode) -> CommandResult:
        result: CommandResult = await self._home(agent).spy(supervisor_extension, agent, mode)
        return result
