"""Raw AMI frames → typed PBX events: the one place that knows Asterisk's header names.

`parse_frame` turns one frame (the text between two blank lines) into a header dict; `normalize` turns a header dict
into a typed event. Both are pure. Events the tracker has no use for pass through as `OtherEvent`; a frame that is
not AMI at all raises `MalformedFrame`, which the connection logs and drops before going on with the next frame.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# Agents are reached as Local/<ext>@agents (queue members, Asterisk's own agent dialplan) or a device named after
# the extension (PJSIP/1001-0000002a, SIP/1001-…, IAX2/1001-…). `/n` and `/m` are Local channel options.
_AGENT_CHANNEL = re.compile(r"^(?:Local/(?P<local>[^@/;]+)@agents|(?:PJSIP|SIP|IAX2)/(?P<device>[^-/;]+))")

MAX_FRAME_BYTES = 256 * 1024  # ListCommands, the biggest real response, is ~60 KB


class MalformedFrame(ValueError):
    """A frame that is not an AMI event or response."""


def agent_of(channel_or_interface: str) -> str | None:
    """The agent's extension for an agent channel or queue interface; None for anything else."""
    match = _AGENT_CHANNEL.match(channel_or_interface)
    if match is None:
        return None
    return match.group("local") or match.group("device")


def parse_frame(frame: str) -> dict[str, str]:
    """Headers of one frame. The first occurrence of a header wins, except for multi-line command output."""
    headers: dict[str, str] = {}
    for line in frame.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            if not line:
                continue
            if "Output" in headers or headers.get("Response") == "Follows":
                headers["Output"] = f"{headers.get('Output', '')}\n{line}" if "Output" in headers else line
                continue
            raise MalformedFrame(f"line without a header name: {line[:80]!r}")
        if value.startswith(" "):
            value = value[1:]
        if name == "Output" and "Output" in headers:
            headers["Output"] += "\n" + value
        elif name not in headers:
            headers[name] = value
    if "Event" not in headers and "Response" not in headers:
        raise MalformedFrame(f"neither Event nor Response in a frame starting {frame[:80]!r}")
    return headers


# --- typed PBX events ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelEvent:
    """Events of one channel: Newchannel, Newstate, Hangup and the like carry these."""

    name: str
    channel: str
    uniqueid: str
    linkedid: str
    caller_number: str
    caller_name: str
    context: str
    exten: str
    state: str


@dataclass(frozen=True, slots=True)
class ChannelCreated(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True)
class ChannelStateChanged(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True)
class ChannelHungUp(ChannelEvent):
    cause: int | None = None
    cause_text: str = ""


@dataclass(frozen=True, slots=True)
class DialplanStep(ChannelEvent):
    """Newexten: only the application matters (VoiceMail marks a voicemail)."""

    application: str = ""


@dataclass(frozen=True, slots=True)
class VariableSet:
    uniqueid: str
    linkedid: str
    variable: str
    value: str


@dataclass(frozen=True, slots=True)
class QueueCallerJoined(ChannelEvent):
    queue: str = ""
    position: int = 0


@dataclass(frozen=True, slots=True)
class QueueCallerLeft(ChannelEvent):
    queue: str = ""


@dataclass(frozen=True, slots=True)
class QueueCallerAbandoned:
    uniqueid: str
    linkedid: str
    queue: str
    hold_time: int


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """AgentCalled/Connect/Complete/RingNoAnswer: a queue offering a caller to a member."""

    name: str
    uniqueid: str  # the caller's channel
    linkedid: str
    caller_number: str
    caller_name: str
    queue: str
    agent: str
    agent_channel: str
    hold_time: int | None
    talk_time: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class DialBegan:
    uniqueid: str  # empty when the PBX itself dials (Originate)
    linkedid: str
    channel: str
    dest_channel: str
    dest_uniqueid: str
    dest_linkedid: str
    dest_exten: str


@dataclass(frozen=True, slots=True)
class DialEnded:
    uniqueid: str
    linkedid: str
    channel: str
    dest_channel: str
    dest_uniqueid: str
    dest_linkedid: str
    status: str


@dataclass(frozen=True, slots=True)
class BlindTransferred:
    transferer_channel: str
    transferer_uniqueid: str
    linkedid: str
    target: str  # extension@context
    success: bool


@dataclass(frozen=True, slots=True)
class AttendedTransferred:
    transferer_channel: str
    transferer_uniqueid: str
    linkedid: str
    target_channel: str
    success: bool


@dataclass(frozen=True, slots=True)
class MusicOnHold:
    uniqueid: str
    linkedid: str
    started: bool


@dataclass(frozen=True, slots=True)
class HoldChanged:
    """Hold/Unhold from a phone that supports it (PJSIP re-INVITE)."""

    uniqueid: str
    linkedid: str
    held: bool


@dataclass(frozen=True, slots=True)
class ParkingChanged:
    """ParkedCall, UnParkedCall, ParkedCallTimeOut, ParkedCallGiveUp: a caller put in a parking space (how a hold is
    done on Asterisk, which has no hold action) and taken out of it."""

    name: str
    linkedid: str  # the parked caller's (ParkeeLinkedid)
    parkee_uniqueid: str
    parkee_channel: str
    space: str
    parker: str  # the parker's dial string (Local/1001@agents), where a timed-out call goes back to
    retriever_channel: str  # who picked it up (UnParkedCall)


@dataclass(frozen=True, slots=True)
class Recording:
    uniqueid: str
    linkedid: str
    started: bool


@dataclass(frozen=True, slots=True)
class QueueMemberChanged:
    """QueueMemberStatus/Pause/Added/Removed, and QueueMember rows of a QueueStatus answer."""

    name: str
    queue: str
    agent: str
    interface: str
    paused: bool
    paused_reason: str
    status: int  # Asterisk device state: 1 not in use, 2 in use, 5 unavailable, 6 ringing …
    in_call: bool


@dataclass(frozen=True, slots=True)
class QueueParamsReported:
    queue: str
    calls: int
    completed: int
    abandoned: int
    hold_time: int
    talk_time: int


@dataclass(frozen=True, slots=True)
class QueueEntryReported:
    queue: str
    uniqueid: str
    channel: str
    caller_number: str
    caller_name: str
    wait: int
    position: int


@dataclass(frozen=True, slots=True)
class ChannelReported(ChannelEvent):
    """A CoreShowChannel or Status row: a channel alive at resync time."""

    seconds: int = 0


@dataclass(frozen=True, slots=True)
class PbxLifecycle:
    """FullyBooted or Shutdown."""

    name: str
    restart: bool = False


@dataclass(frozen=True, slots=True)
class OtherEvent:
    name: str
    headers: dict[str, str]


PbxEvent = (
    ChannelEvent
    | VariableSet
    | QueueCallerAbandoned
    | AgentEvent
    | DialBegan
    | DialEnded
    | BlindTransferred
    | AttendedTransferred
    | MusicOnHold
    | HoldChanged
    | ParkingChanged
    | Recording
    | QueueMemberChanged
    | QueueParamsReported
    | QueueEntryReported
    | PbxLifecycle
    | OtherEvent
)


def _int(value: str | None, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        return default


def _channel_fields(h: dict[str, str], name: str) -> tuple[str, str, str, str, str, str, str, str, str]:
    return (
        name,
        h.get("Channel", ""),
        h.get("Uniqueid", ""),
        h.get("Linkedid", h.get("Uniqueid", "")),
        h.get("CallerIDNum", ""),
        h.get("CallerIDName", ""),
        h.get("Context", ""),
        h.get("Exten", ""),
        h.get("ChannelState", ""),
    )


def _agent_event(h: dict[str, str]) -> AgentEvent:
    interface = h.get("Interface", "")
    return AgentEvent(
        h["Event"],
        h.get("Uniqueid", ""),
        h.get("Linkedid", ""),
        h.get("CallerIDNum", ""),
        h.get("CallerIDName", ""),
        h.get("Queue", ""),
        agent_of(interface) or agent_of(h.get("DestChannel", "")) or interface,
        h.get("DestChannel", ""),
        _int(h.get("HoldTime")),
        _int(h.get("TalkTime")),
        h.get("Reason", ""),
    )


def _member(h: dict[str, str]) -> QueueMemberChanged:
    interface = h.get("Interface") or h.get("Location", "")
    return QueueMemberChanged(
        h["Event"],
        h.get("Queue", ""),
        agent_of(interface) or interface,
        interface,
        h.get("Paused") == "1",
        h.get("PausedReason", ""),
        _int(h.get("Status"), 0) or 0,
        h.get("InCall") == "1",
    )


def _hangup(h: dict[str, str]) -> ChannelHungUp:
    return ChannelHungUp(*_channel_fields(h, "Hangup"), cause=_int(h.get("Cause")), cause_text=h.get("Cause-txt", ""))


def _dial_begin(h: dict[str, str]) -> DialBegan:
    return DialBegan(
        h.get("Uniqueid", ""),
        h.get("Linkedid", ""),
        h.get("Channel", ""),
        h.get("DestChannel", ""),
        h.get("DestUniqueid", ""),
        h.get("DestLinkedid", ""),
        h.get("DestExten", ""),
    )


def _dial_end(h: dict[str, str]) -> DialEnded:
    return DialEnded(
        h.get("Uniqueid", ""),
        h.get("Linkedid", ""),
        h.get("Channel", ""),
        h.get("DestChannel", ""),
        h.get("DestUniqueid", ""),
        h.get("DestLinkedid", ""),
        h.get("DialStatus", ""),
    )


CRM_VARIABLE_PREFIX = "CRM_"  # what the IVR sets for the screen pop
RECORDING_VARIABLE = "MIXMONITOR_FILENAME"
VOICEMAIL_APPLICATION = "VoiceMail"


def _var_set(h: dict[str, str]) -> VariableSet | OtherEvent:
    variable = h.get("Variable", "")
    if variable.startswith(CRM_VARIABLE_PREFIX) or variable == RECORDING_VARIABLE:
        return VariableSet(h.get("Uniqueid", ""), h.get("Linkedid", ""), variable, h.get("Value", ""))
    return OtherEvent("VarSet", h)  # half of all AMI traffic: pass through without more work


def _newexten(h: dict[str, str]) -> DialplanStep | OtherEvent:
    application = h.get("Application", "")
    if application == VOICEMAIL_APPLICATION:
        return DialplanStep(*_channel_fields(h, "Newexten"), application=application)
    return OtherEvent("Newexten", h)


def _blind(h: dict[str, str]) -> BlindTransferred:
    return BlindTransferred(
        h.get("TransfererChannel", ""),
        h.get("TransfererUniqueid", ""),
        h.get("TransfererLinkedid", h.get("TransfereeLinkedid", "")),
        f"{h.get('Extension', '')}@{h.get('Context', '')}",
        h.get("Result") == "Success",
    )


def _attended(h: dict[str, str]) -> AttendedTransferred:
    return AttendedTransferred(
        h.get("OrigTransfererChannel", ""),
        h.get("OrigTransfererUniqueid", ""),
        h.get("OrigTransfererLinkedid", h.get("TransfereeLinkedid", "")),
        h.get("TransferTargetChannel", h.get("SecondTransfererChannel", "")),
        h.get("Result") == "Success",
    )


def _parking(h: dict[str, str]) -> ParkingChanged:
    return ParkingChanged(
        h["Event"],
        h.get("ParkeeLinkedid", ""),
        h.get("ParkeeUniqueid", ""),
        h.get("ParkeeChannel", ""),
        h.get("ParkingSpace", ""),
        h.get("ParkerDialString", ""),
        h.get("RetrieverChannel", ""),
    )


_BUILDERS: dict[str, Callable[[dict[str, str]], PbxEvent]] = {
    "VarSet": _var_set,
    "Newexten": _newexten,
    "Newchannel": lambda h: ChannelCreated(*_channel_fields(h, "Newchannel")),
    "Newstate": lambda h: ChannelStateChanged(*_channel_fields(h, "Newstate")),
    "Hangup": _hangup,
    "QueueCallerJoin": lambda h: QueueCallerJoined(
        *_channel_fields(h, "QueueCallerJoin"), queue=h.get("Queue", ""), position=_int(h.get("Position"), 0) or 0
    ),
    "QueueCallerLeave": lambda h: QueueCallerLeft(*_channel_fields(h, "QueueCallerLeave"), queue=h.get("Queue", "")),
    "QueueCallerAbandon": lambda h: QueueCallerAbandoned(
        h.get("Uniqueid", ""), h.get("Linkedid", ""), h.get("Queue", ""), _int(h.get("HoldTime"), 0) or 0
    ),
    "AgentCalled": _agent_event,
    "AgentConnect": _agent_event,
    "AgentComplete": _agent_event,
    "AgentRingNoAnswer": _agent_event,
    "AgentDump": _agent_event,
    "DialBegin": _dial_begin,
    "DialEnd": _dial_end,
    "BlindTransfer": _blind,
    "AttendedTransfer": _attended,
    "MusicOnHoldStart": lambda h: MusicOnHold(h.get("Uniqueid", ""), h.get("Linkedid", ""), True),
    "MusicOnHoldStop": lambda h: MusicOnHold(h.get("Uniqueid", ""), h.get("Linkedid", ""), False),
    "Hold": lambda h: HoldChanged(h.get("Uniqueid", ""), h.get("Linkedid", ""), True),
    "Unhold": lambda h: HoldChanged(h.get("Uniqueid", ""), h.get("Linkedid", ""), False),
    "ParkedCall": _parking,
    "UnParkedCall": _parking,
    "ParkedCallTimeOut": _parking,
    "ParkedCallGiveUp": _parking,
    "MixMonitorStart": lambda h: Recording(h.get("Uniqueid", ""), h.get("Linkedid", ""), True),
    "MixMonitorStop": lambda h: Recording(h.get("Uniqueid", ""), h.get("Linkedid", ""), False),
    "QueueMemberStatus": _member,
    "QueueMemberPause": _member,
    "QueueMemberAdded": _member,
    "QueueMemberRemoved": _member,
    "QueueMember": _member,
    "QueueParams": lambda h: QueueParamsReported(
        h.get("Queue", ""),
        _int(h.get("Calls"), 0) or 0,
        _int(h.get("Completed"), 0) or 0,
        _int(h.get("Abandoned"), 0) or 0,
        _int(h.get("Holdtime"), 0) or 0,
        _int(h.get("TalkTime"), 0) or 0,
    ),
    "QueueEntry": lambda h: QueueEntryReported(
        h.get("Queue", ""),
        h.get("Uniqueid", ""),
        h.get("Channel", ""),
        h.get("CallerIDNum", ""),
        h.get("CallerIDName", ""),
        _int(h.get("Wait"), 0) or 0,
        _int(h.get("Position"), 0) or 0,
    ),
    "CoreShowChannel": lambda h: ChannelReported(
        *_channel_fields(h, "CoreShowChannel"), seconds=_duration(h.get("Duration", ""))
    ),
    "Status": lambda h: ChannelReported(*_channel_fields(h, "Status"), seconds=_int(h.get("Seconds"), 0) or 0),
    "FullyBooted": lambda h: PbxLifecycle("FullyBooted"),
    "Shutdown": lambda h: PbxLifecycle("Shutdown", restart=h.get("Restart") == "True"),
}


def _duration(value: str) -> int:
    parts = value.split(":")
    if len(parts) != 3:
        return 0
    try:
        hours, minutes, seconds = (int(p) for p in parts)
    except ValueError:
        return 0
    return hours * 3600 + minutes * 60 + seconds


def tracked_events_filter() -> str:
    """The AMI event filter (a POSIX extended regex over the whole event, as Asterisk's `Filter` action takes it)
    that lets through only what the tracker follows: the events it has a builder for, VarSet only for CRM_
    variables and the recording's file name, Newexten only for voicemail, and UserEvents (dialplans send them for
    integrations; see AsteriskAdapter.on_pbx_event). Of the recorded answered queue call's 265 events, 44 pass."""
    names = "|".join([*sorted(name for name in _BUILDERS if name not in ("VarSet", "Newexten")), "UserEvent"])
    return (
        f"Event: (({names})[[:space:]]"
        f"|VarSet[[:space:]].*Variable: ({CRM_VARIABLE_PREFIX}|{RECORDING_VARIABLE}[[:space:]])"
        f"|Newexten[[:space:]].*Application: {VOICEMAIL_APPLICATION}[[:space:]])"
    )


def normalize(headers: dict[str, str]) -> PbxEvent:
    """The typed event for one event frame's headers. Never raises on odd values; a missing header is empty."""
    name = headers.get("Event", "")
    builder = _BUILDERS.get(name)
    if builder is None:
        return OtherEvent(name, headers)
    return builder(headers)
