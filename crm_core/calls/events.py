"""Telephony domain events: what happened to calls, agents and queues, as the CTI bridge saw it on the PBX.

They carry ids and plain values (never ORM objects) and UTC-aware times. `crm_vars` holds the CRM_* channel
variables the IVR set (customer id, path, language, choices) as sorted (name, value) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from crm_core.bus import register_event


class CallDirection(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class CallOutcome(StrEnum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    MISSED = "missed"
    VOICEMAIL = "voicemail"
    FAILED = "failed"


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on_call"
    PAUSED = "paused"
    WRAP_UP = "wrap_up"
    UNAVAILABLE = "unavailable"


class TransferKind(StrEnum):
    BLIND = "blind"
    ATTENDED = "attended"
    REDIRECT = "redirect"


@register_event
@dataclass(frozen=True, slots=True)
class CallOffered:
    """A caller entered a queue (inbound) or an outbound dial began."""

    linkedid: str
    direction: CallDirection
    caller_number: str
    caller_name: str
    callee_number: str
    queue: str | None
    position: int | None
    offered_at: datetime
    crm_vars: tuple[tuple[str, str], ...] = ()


@register_event
@dataclass(frozen=True, slots=True)
class CallStarted:
    """A call's caller is known, before any IVR or queue: time to look the caller up before anyone rings."""

    linkedid: str
    direction: CallDirection
    number: str  # the customer's side: the caller of an inbound call, the dialled number of an outbound one
    name: str
    started_at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class AgentRinging:
    """An agent's device rings for a call: the screen pop."""

    linkedid: str
    agent: str
    agent_channel: str
    queue: str | None
    caller_number: str
    caller_name: str
    waited_seconds: float
    rang_at: datetime
    crm_vars: tuple[tuple[str, str], ...] = ()
    direction: CallDirection = CallDirection.INBOUND


@register_event
@dataclass(frozen=True, slots=True)
class CallAnswered:
    linkedid: str
    agent: str
    queue: str | None
    answered_at: datetime
    wait_seconds: float
    ring_seconds: float


@register_event
@dataclass(frozen=True, slots=True)
class CallTransferred:
    linkedid: str
    kind: TransferKind
    from_agent: str | None
    target: str
    transferred_at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class CallHeld:
    linkedid: str
    agent: str | None
    held_at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class CallResumed:
    linkedid: str
    agent: str | None
    resumed_at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class CallLegSummary:
    """Who talked when on one call: one entry per agent leg that was offered the call."""

    agent: str
    channel: str
    queue: str | None
    rang_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None


@register_event
@dataclass(frozen=True, slots=True)
class CallEnded:
    linkedid: str
    direction: CallDirection
    outcome: CallOutcome
    caller_number: str
    caller_name: str
    callee_number: str
    queue: str | None
    agent: str | None
    offered_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    wait_seconds: float
    talk_seconds: float
    hold_seconds: float
    hangup_cause: int | None
    recording: str | None = None
    legs: tuple[CallLegSummary, ...] = ()
    crm_vars: tuple[tuple[str, str], ...] = ()
    # True when the bridge was disconnected when the call ended and closed it at resync.
    closed_at_resync: bool = False
    transferred: bool = False


@register_event
@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    agent: str
    state: AgentState
    changed_at: datetime
    reason: str | None = None
    queues: tuple[str, ...] = field(default_factory=tuple)
    linkedid: str | None = None


@register_event
@dataclass(frozen=True, slots=True)
class QueueStatsChanged:
    queue: str
    waiting: int
    longest_wait_seconds: float
    answered: int
    abandoned: int
    logged_in: int
    available: int
    on_call: int
    paused: int
    wrap_up: int
    service_level_pct: float | None
    average_wait_seconds: float
    average_talk_seconds: float
    changed_at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class CallsResynced:
    """The bridge rebuilt its state from the PBX: these calls are alive, every other open call log has ended."""

    live_linkedids: tuple[str, ...]
    resynced_at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class CallWrappedUp:
    """An agent saved the disposition of a call: its wrap-up is over."""

    linkedid: str
    agent: str | None
    disposition_code: str
    wrapped_up_at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class IvrVariablesSet:
    """The product's IVR put CRM_* variables on a caller's channel (`uniqueid`, the channel its AGI session ran
    on). Told over the bus as well as on the channel: an AMI user with `read = call,agent` gets no VarSet events
    (class `dialplan`), and the pop must still show the IVR path and choices."""

    uniqueid: str
    variables: tuple[tuple[str, str], ...]
    set_at: datetime
