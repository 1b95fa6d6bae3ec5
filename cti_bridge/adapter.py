"""The PBX-adapter interface: what the rest of the product may ask of any PBX, and what it can read back.

Asterisk over AMI is the first adapter (`cti_bridge.asterisk`); ARI, FreeSWITCH ESL, Twilio Voice or a TAPI
gateway plug in by implementing `PbxAdapter`. Consumers (the agent desktop, the IVR's callback dialer) only see
this module and the domain events of `crm_core.calls.events`, never AMI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from crm_core.calls.events import AgentState, CallDirection, QueueStatsChanged


class CommandErrorCode(StrEnum):
    AGENT_NOT_LOGGED_IN = "agent_not_logged_in"
    CHANNEL_GONE = "channel_gone"
    CALL_NOT_FOUND = "call_not_found"
    PBX_UNREACHABLE = "pbx_unreachable"
    NOT_SUPPORTED = "not_supported"
    REJECTED = "rejected"  # the PBX answered Error; its message is in `detail`
    INVALID = "invalid"  # bad input (an empty number, an unknown queue)


class CommandError(Exception):
    """A PBX command failed; `code` is stable, `detail` is one sentence a person can read."""

    def __init__(self, code: CommandErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A command the PBX accepted. `reference` is what the PBX gave back (an ActionID, a channel), if anything."""

    command: str
    reference: str | None = None


class SpyMode(StrEnum):
    LISTEN = "listen"  # hear both sides, nobody hears the supervisor
    WHISPER = "whisper"  # the agent hears the supervisor, the caller does not
    BARGE = "barge"  # both hear the supervisor


class Capability(StrEnum):
    """A command a PBX adapter can carry out; the desktop shows the controls of these only."""

    DIAL = "dial"
    HANGUP = "hangup"
    BLIND_TRANSFER = "blind_transfer"
    ATTENDED_TRANSFER = "attended_transfer"
    HOLD = "hold"  # and resume
    QUEUE_LOGIN = "queue_login"  # and logout
    PAUSE = "pause"  # and unpause
    SPY = "spy"


class CallState(StrEnum):
    QUEUED = "queued"
    RINGING = "ringing"
    UP = "up"
    HELD = "held"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class LiveCall:
    """A call as the tracker knows it now; enough to pop it again after a browser reconnects."""

    linkedid: str
    direction: CallDirection
    state: CallState
    caller_number: str
    caller_name: str
    callee_number: str
    queue: str | None
    agent: str | None  # the agent talking, or None while queued
    ringing_agents: tuple[str, ...]
    offered_at: datetime
    answered_at: datetime | None
    crm_vars: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class AgentStatus:
    agent: str  # the extension, e.g. "1001"
    state: AgentState
    since: datetime
    queues: tuple[str, ...] = ()
    paused_reason: str | None = None
    linkedid: str | None = None
    calls_today: int = 0


@dataclass(frozen=True, slots=True)
class PbxSnapshot:
    connected: bool
    calls: tuple[LiveCall, ...] = ()
    agents: tuple[AgentStatus, ...] = ()
    queues: tuple[QueueStatsChanged, ...] = ()
    taken_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)
    capabilities: frozenset[Capability] = frozenset()  # what the adapter can do (an empty set: nothing known)


class PbxAdapter(Protocol):
    """One PBX. Every command returns a CommandResult or raises CommandError; none blocks longer than its timeout.

    An adapter says what it can do in `snapshot().capabilities` (and, without the cost of a snapshot, in its
    `capabilities` attribute where it has one): a command it cannot carry out raises NOT_SUPPORTED, and its
    control is not shown."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    def snapshot(self) -> PbxSnapshot:
        """Live calls, agent states and queue figures as known now (no I/O)."""
        ...

    async def dial(self, agent: str, number: str, *, caller_id: str | None = None) -> CommandResult:
        """Click-to-dial: ring the agent's device, then the number."""
        ...

    async def hangup(self, linkedid: str, *, agent: str | None = None) -> CommandResult: ...
    async def blind_transfer(self, linkedid: str, agent: str, target: str) -> CommandResult: ...
    async def attended_transfer(self, linkedid: str, agent: str, target: str) -> CommandResult: ...
    async def hold(self, linkedid: str, agent: str) -> CommandResult: ...
    async def resume(self, linkedid: str, agent: str) -> CommandResult: ...
    async def queue_login(self, agent: str, queue: str) -> CommandResult: ...
    async def queue_logout(self, agent: str, queue: str) -> CommandResult: ...
    async def pause(self, agent: str, reason: str, *, queue: str | None = None) -> CommandResult: ...
    async def unpause(self, agent: str, *, queue: str | None = None) -> CommandResult: ...
    async def spy(self, supervisor_extension: str, agent: str, mode: SpyMode) -> CommandResult: ...
