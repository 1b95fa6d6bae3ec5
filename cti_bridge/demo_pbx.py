"""The demo PBX: an AMI server over TCP that behaves like the recorded Asterisk 22.

It speaks the real protocol (banner, Login plain or MD5 challenge, ActionID, Response, event lists, events) and
makes calls by replaying the recorded call templates in `cti_bridge/scenarios/` with new ids, channel names,
callers, queues and agents, so its event sequences have the shape of a real Asterisk's. It answers the actions the
CTI bridge sends (Originate, Hangup, transfers, queue membership and pause, the resync lists) and can replay a
recorded AMI trace as is. `crm serve` runs it when no PBX is configured; the tests use it as the Asterisk fake.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import functools
import gzip
import hashlib
import itertools
import json
import logging
import math
import random
import re
import secrets
import ssl
import sys
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
SCENARIOS = Path(__file__).parent / "scenarios"
_ID = re.compile(r"\b\d{10}\.\d+\b")
_CHANNEL_SEQ = re.compile(r"-([0-9a-f]{8});([12])")

FrameHook = Callable[[str, dict[str, str], int], None]
_MEMBER_STATUS = "Event: QueueMemberStatus\r\n"
_MEMBER_QUEUE = re.compile(r"^Queue: [^\r\n]*", re.MULTILINE)
_MEMBER_PAUSED = re.compile(r"^Paused: [^\r\n]*", re.MULTILINE)
_MEMBER_REASON = re.compile(r"^PausedReason:[^\r\n]*", re.MULTILINE)


def _headers(frame: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in frame.split("\r\n"):
        name, sep, value = line.partition(": ")
        if sep and name not in headers:
            headers[name] = value
        elif not sep and line.endswith(":"):
            headers.setdefault(line[:-1], "")
    return headers


# Asterisk's manager reads a line up to CRLF or a bare LF, and an action up to the first empty line
_ACTION_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(r"\r?\n")


def _action_lines(block: str) -> list[tuple[str, str]]:
    """An action's header lines as Asterisk reads them: the name ends at the first colon, blanks after it are
    skipped, a repeated header stays (Asterisk acts on the first)."""
    lines: list[tuple[str, str]] = []
    for line in _LINE_END.split(block):
        name, sep, value = line.partition(":")
        if sep:
            lines.append((name, value.lstrip(" \t")))
    return lines


def _agent_of_channel(name: str) -> str | None:
    if not name.startswith("Local/") or "@agents-" not in name:
        return None
    return name[6 : name.index("@agents-")]


def _frame(pairs: list[tuple[str, str]]) -> str:
    return "\r\n".join(f"{k}: {v}" for k, v in pairs)


@dataclass
class TraceFrame:
    t: float  # seconds since the recording's connect
    text: str  # without the blank line that ends it
    headers: dict[str, str]


def load_trace(ami: Path, timing: Path | None = None) -> list[TraceFrame]:
    """The frames of a recorded AMI stream (banner dropped), each with the time its bytes arrived."""
    opener = gzip.open if ami.suffix == ".gz" else open
    with opener(ami, "rb") as fh:
        raw = fh.read()
    chunk_times: list[tuple[int, float]] = []
    if timing is not None and timing.exists():
        topen = gzip.open if timing.suffix == ".gz" else open
        with topen(timing, "rt") as fh:
            for line in fh:
                row = json.loads(line)
                if "off" in row:
                    chunk_times.append((row["off"], row["t"]))
    frames: list[TraceFrame] = []
    start = raw.find(b"\r\n") + 2 if raw.startswith(b"Asterisk Call Manager/") else 0
    chunk = 0
    position = start
    while True:
        end = raw.find(b"\r\n\r\n", position)
        if end < 0:
            break
        text = raw[position:end].decode("utf-8", "replace")
        while chunk + 1 < len(chunk_times) and chunk_times[chunk + 1][0] <= end:
            chunk += 1
        t = chunk_times[chunk][1] if chunk_times else 0.0
        if text:
            frames.append(TraceFrame(t, text, _headers(text)))
        position = end + 4
    return frames


@dataclass
class _Template:
    frames: list[TraceFrame]
    marks: dict[str, float]
    caller_number: str
    caller_name: str
    queue: str
    agents: tuple[str, ...]  # the first one answers
    caller_uniqueid: str = ""  # the queue caller's channel (the `;2` half), as recorded
    caller_seq: str = ""  # its Local channel's sequence number, as recorded
    agent_channel: str = ""  # the `;1` of the agent the queue connected first, as recorded
    uniqueids: dict[str, str] = field(default_factory=dict)  # channel name -> Uniqueid, as recorded


_TEMPLATES: dict[str, _Template] = {}


def _template(name: str) -> _Template:
    if name in _TEMPLATES:
        return _TEMPLATES[name]
    frames = [
        f
        for f in load_trace(SCENARIOS / f"{name}.ami.gz", SCENARIOS / f"{name}.timing.jsonl.gz")
        if "Event" in f.headers and f.headers["Event"] not in ("FullyBooted", "SuccessfulAuth", "OriginateResponse")
    ]
    marks: dict[str, float] = {"start": frames[0].t, "end": frames[-1].t}
    caller_uniqueid = caller_seq = agent_channel = ""
    uniqueids: dict[str, str] = {}
    bridges = 0
    for f in frames:
        event = f.headers["Event"]
        if event == "QueueCallerJoin" and "join" not in marks:
            marks["join"] = f.t
            caller_uniqueid = f.headers.get("Uniqueid", "")
            seq = _CHANNEL_SEQ.search(f.headers.get("Channel", ""))
            caller_seq = seq.group(1) if seq else ""
        elif event == "Newchannel" and "join" in marks and "ring" not in marks:
            marks["ring"] = f.t  # the queue's first round of ringing agents starts here
        elif event in ("Unhold", "BlindTransfer", "DTMFEnd") and "connect" in marks:
            marks.setdefault("transfer", f.t)  # what the CRM's action (BlindTransfer, Atxfer) caused
        elif event == "BridgeMerge":
            marks.setdefault("complete", f.t)  # the transferring agent hung up: the attended transfer completes
        elif event == "BridgeCreate" and "connect" in marks:
            bridges += 1
            if bridges == 2:
                marks.setdefault("park", f.t)  # the parking lot's bridge: what the CRM's Park caused
        elif event == "Newchannel" and "park" in marks:
            marks.setdefault("retrieve", f.t)  # the agent originated into the parking space
        elif event == "AgentConnect":
            marks.setdefault("connect", f.t)
            agent_channel = agent_channel or f.headers.get("DestChannel", "")
        elif event == "DialEnd" and f.headers.get("DialStatus") == "ANSWER" and f.headers.get("Channel"):
            marks.setdefault("far_answer", f.t)
        if event == "Newchannel":
            uniqueids[f.headers.get("Channel", "")] = f.headers.get("Uniqueid", "")
    if name == "click_to_dial":
        template = _Template(frames, marks, "15559870000", "", "", ("1001",))
    elif name == "transfer_blind":
        template = _Template(frames, marks, "+15551230004", "Dave Example", "", ("1001", "2001"))
    elif name == "transfer_attended":
        template = _Template(frames, marks, "+15551230005", "Erin Example", "", ("1001", "2001"))
    elif name == "hold_park":
        template = _Template(frames, marks, "+15551230007", "Grace Example", "", ("1001", "1002"))
    elif name == "inbound_abandoned":
        template = _Template(frames, marks, "+15551230002", "Bob Example", "support", ("1001", "1002"))
    else:
        template = _Template(frames, marks, "+15551230001", "Alice Example", "support", ("1001", "1002"))
    template.caller_uniqueid, template.caller_seq = caller_uniqueid, caller_seq
    template.agent_channel, template.uniqueids = agent_channel, uniqueids
    _TEMPLATES[name] = template
    return template


@dataclass
class _Member:
    paused: bool = False
    reason: str = ""
    status: int = 1  # 1 not in use, 2 in use, 6 ringing, 5 unavailable
    calls_taken: int = 0


@dataclass
class _Channel:
    name: str
    uniqueid: str
    linkedid: str
    state: str = "0"
    caller_number: str = "<unknown>"
    caller_name: str = "<unknown>"
    context: str = ""
    exten: str = ""
    created: float = field(default_factory=time.monotonic)


@dataclass
class _Entry:
    queue: str
    uniqueid: str
    channel: str
    caller_number: str
    caller_name: str
    joined: float = field(default_factory=time.monotonic)


# the actions the demo answers, as the real ListCommands lists them (tests/fixtures/ami/queue_status_idle.ami):
# an AMI user may use an action whose classes meet its `write` classes (none: anyone), as Asterisk's manager.c has it
_ACTIONS = {
    "Atxfer": "Attended transfer.  (Priv: call,all)",
    "BlindTransfer": "Blind transfer channel(s) to the given destination  (Priv: call,all)",
    "Challenge": "Generate Challenge for MD5 Auth.  (Priv: <none>)",
    "Command": "Execute Asterisk CLI Command.  (Priv: command,all)",
    "CoreShowChannels": "List currently active channels.  (Priv: system,reporting,all)",
    "Events": "Control Event Flow.  (Priv: <none>)",
    "Filter": "Dynamically add filters for the current manager session.  (Priv: system,all)",
    "Getvar": "Gets a channel variable or function value.  (Priv: call,reporting,all)",
    "Hangup": "Hangup channel.  (Priv: system,call,all)",
    "ListCommands": "List available manager commands.  (Priv: <none>)",
    "Login": "Login Manager.  (Priv: <none>)",
    "Logoff": "Logoff Manager.  (Priv: <none>)",
    "Originate": "Originate a call.  (Priv: originate,all)",
    "Park": "Park a channel.  (Priv: call,all)",
    "Ping": "Keepalive command.  (Priv: <none>)",
    "QueueAdd": "Add interface to queue.  (Priv: agent,all)",
    "QueuePause": "Makes a queue member temporarily unavailable.  (Priv: agent,all)",
    "QueueRemove": "Remove interface from queue.  (Priv: agent,all)",
    "QueueStatus": "Show queue status.  (Priv: <none>)",
    "QueueSummary": "Show queue summary.  (Priv: <none>)",
    "Redirect": "Redirect (transfer) a call.  (Priv: call,all)",
    "Status": "List channel status.  (Priv: system,call,reporting,all)",
    "UserEvent": "Send an arbitrary event.  (Priv: user,all)",
}
_ACTION_CLASSES = {
    name.lower(): frozenset(text.rsplit("(Priv: ", 1)[1].rstrip(")").split(",")) - {"all", "<none>"}
    for name, text in _ACTIONS.items()
}


def _classes(privilege: str) -> frozenset[str]:
    return frozenset(privilege.split(",")) - {"all"}


_POSIX_CLASSES = {"[[:space:]]": r"\s", "[[:digit:]]": r"\d", "[[:alpha:]]": "[A-Za-z]", "[[:alnum:]]": "[A-Za-z0-9]"}


def _posix_regex(text: str) -> re.Pattern[str]:
    """An AMI filter as Asterisk compiles it (POSIX extended, `.` matching line ends too) in Python's dialect."""
    for posix, python in _POSIX_CLASSES.items():
        text = text.replace(posix, python)
    return re.compile(text, re.DOTALL)


@functools.cache
def _tone_second() -> bytes:
    """One second of a 425 Hz tone, 8 kHz 16-bit mono: 425 whole periods, so seconds of it join without a click.
    Built once: a recording is this repeated, not computed sample by sample in a thread beside the event loop."""
    samples = array.array("h", (int(6000 * math.sin(2 * math.pi * 425 * n / 8000)) for n in range(8000)))
    if sys.byteorder == "big":
        samples.byteswap()  # WAV is little-endian
    return samples.tobytes()


class _Session:
    def __init__(self, pbx: DemoPbx, writer: asyncio.StreamWriter) -> None:
        self.pbx = pbx
        self.writer = writer
        self.logged_in = False
        self.events = True
        self.challenge: str | None = None
        self.include_filters: list[re.Pattern[str]] = []  # the session's Filter actions, as Asterisk keeps them
        self.exclude_filters: list[re.Pattern[str]] = []

    def wants(self, frame: str) -> bool:
        """Asterisk's evaluation of a session's event filters (manager.c): none, all pass; include filters only,
        the event must match one; exclude filters only, it must match none; both: match an include, then no
        exclude."""
        if self.include_filters and not any(f.search(frame) for f in self.include_filters):
            return False
        return not any(f.search(frame) for f in self.exclude_filters)

    def send(self, frame: str) -> None:
        if not self.writer.is_closing():
            self.writer.write(frame.encode() + b"\r\n\r\n")


class DemoPbx:
    """An Asterisk-like AMI server with queues, agents and callers of its own."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str = "crm",
        secret: str | None = None,
        time_scale: float = 1.0,
        queues: dict[str, list[str]] | None = None,
        logged_in: bool = True,
        seed: int | None = None,
        filter_permitted: bool = True,
        recordings_dir: Path | None = None,
        read_classes: frozenset[str] | None = None,
        write_classes: frozenset[str] | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self.username = username
        self.filter_permitted = filter_permitted  # False: an AMI user without write=system, as Asterisk refuses it
        # the AMI user's `read` and `write` classes in manager.conf (None: all); a least-privilege user is
        # read = call,agent: it gets no VarSet (class dialplan), so no CRM_ variable, from the PBX
        self.read_classes = read_classes
        self.write_classes = write_classes
        # where the demo's call recordings appear, as Asterisk's monitor spool would through a mount: a tone as long
        # as the recorded channel lived, written when it hangs up
        self.recordings_dir = recordings_dir
        self._recording: dict[str, tuple[str, float]] = {}  # uniqueid -> (file name, started)
        self._writing: set[asyncio.Future[None]] = set()
        self.secret = secret or secrets.token_urlsafe(16)  # a demo PBX on a shared host gets no known password
        self.time_scale = time_scale
        self._rng = random.Random(seed)
        self.members: dict[str, dict[str, _Member]] = {
            queue: ({agent: _Member() for agent in agents} if logged_in else {})
            for queue, agents in (queues or {"support": ["1001", "1002"], "sales": ["2001", "2002"]}).items()
        }
        self.channels: dict[str, _Channel] = {}
        self._agent_channels: dict[str, int] = {}  # extension -> live Local/<ext>@agents channels
        self.entries: dict[str, _Entry] = {}  # uniqueid -> caller waiting in a queue
        self.completed: dict[str, int] = dict.fromkeys(self.members, 0)
        self.abandoned: dict[str, int] = dict.fromkeys(self.members, 0)
        self._sessions: set[_Session] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._calls: dict[str, asyncio.Task[None]] = {}
        self._traffic: asyncio.Task[None] | None = None
        self._epoch = int(time.time())
        self._ids = itertools.count(1)
        self._channel_seq = itertools.count(1)
        self.on_frame_sent: FrameHook | None = None
        self.actions_received: list[dict[str, str]] = []
        # every action as the header lines it arrived with, repeated ones included: a header or an action that a
        # value smuggled in shows here
        self.action_lines_received: list[list[tuple[str, str]]] = []
        self.calls_placed = 0
        self._answered_by: dict[str, str] = {}  # linkedid -> the agent a queue connected the caller to
        self._pacing: dict[str, tuple[float, float]] = {}  # linkedid -> (ring, talk) seconds asked for
        self._queue_by_call: dict[str, str] = {}  # linkedid -> the queue the caller was last in
        self._consults: dict[str, tuple[str, dict[str, Any]]] = {}  # linkedid -> attended transfer under way
        self._parked: dict[str, str] = {}  # linkedid -> its parking space
        self._park_options: dict[str, dict[str, Any]] = {}  # linkedid -> how its pickup plays
        # who calls when traffic runs; the product replaces it with numbers of real customers (set_callers)
        self.callers: list[tuple[str, str]] = [(f"+1555200{i:04d}", f"Demo Caller {i}") for i in range(1, 200)]

    # --- server -----------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def url(self) -> str:
        return f"ami://{self.username}:{self.secret}@{self.host}:{self.port}"

    async def start(self, *, tls: ssl.SSLContext | None = None) -> None:
        """Listen (again, on the same port after a stop); with `tls`, AMI over TLS as Asterisk's tlsenable gives."""
        self._tls = tls if tls is not None else getattr(self, "_tls", None)
        self._server = await asyncio.start_server(self._serve, self.host, self._port, ssl=self._tls)
        if self._port == 0:
            self._port = self.port

    async def stop(self) -> None:
        await self.stop_traffic()
        for task in list(self._calls.values()):
            task.cancel()
        for task in list(self._calls.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.recordings_written()
        self.drop_connections()
        for writer in list(self._writers):
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def drop_connections(self) -> None:
        """Close every client socket at once, as a network failure or a PBX crash would."""
        for session in list(self._sessions):
            session.writer.close()
        self._sessions.clear()

    async def close_listener(self) -> None:
        """Stop accepting connections (the PBX is down) without ending calls; `start` brings it back."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(self, writer)
        self._writers.add(writer)
        writer.write(BANNER)
        buffer = b""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                buffer += data
                while (end := _ACTION_END.search(buffer)) is not None:
                    block, buffer = buffer[: end.start()].decode("utf-8", "replace"), buffer[end.end() :]
                    if block.strip():
                        if not self._action(session, block):
                            await writer.drain()
                            writer.close()
                            return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._sessions.discard(session)
            self._writers.discard(writer)
            writer.close()

    # --- actions ----------------------------------------------------------------------------------------------

    def _action(self, session: _Session, block: str) -> bool:
        """Answer one action; False when the session must end."""
        lines = _action_lines(block)
        self.action_lines_received.append(lines)
        fields: dict[str, str] = {}
        for name, value in lines:
            fields.setdefault(name, value)  # Asterisk reads the first of a repeated header
        self.actions_received.append(fields)
        action_id = fields.get("ActionID")
        name = fields.get("Action", "")

        def reply(response: str, *pairs: tuple[str, str]) -> None:
            head = [("Response", response)] + ([("ActionID", action_id)] if action_id is not None else [])
            session.send(_frame(head + list(pairs)))

        if not name:
            reply("Error", ("Message", "Missing action in request"))
            return True
        lowered = name.lower()
        if lowered == "challenge":
            session.challenge = str(self._rng.randrange(10**8, 10**9))
            reply("Success", ("Challenge", session.challenge))
            return True
        if lowered == "login":
            return self._login(session, fields, reply)
        if not session.logged_in:
            reply("Error", ("Message", "Permission denied"))
            return True
        handler = getattr(self, f"_do_{lowered}", None)
        if handler is None:
            reply(
                "Error",
                ("Message", f"Invalid/unknown command: {name}. Use Action: ListCommands to show available commands."),
            )
            return True
        needs = _ACTION_CLASSES.get(lowered, frozenset())
        if needs and self.write_classes is not None and not needs & self.write_classes:
            reply("Error", ("Message", "Permission denied"))
            return True
        result: bool = handler(session, fields, reply)
        return result

    def _do_listcommands(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        """Only the actions this AMI user may use, as Asterisk lists them."""
        permitted = [
            (name, text)
            for name, text in _ACTIONS.items()
            if self.write_classes is None
            or not _ACTION_CLASSES[name.lower()]
            or _ACTION_CLASSES[name.lower()] & self.write_classes
        ]
        reply("Success", *permitted)
        return True

    def _login(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        if session.logged_in:
            reply("Success", ("Message", "Already authenticated"))
            return True
        ok = fields.get("Username") == self.username
        if ok and fields.get("AuthType", "").lower() == "md5":
            expected = hashlib.md5(f"{session.challenge}{self.secret}".encode(), usedforsecurity=False).hexdigest()
            ok = session.challenge is not None and secrets.compare_digest(fields.get("Key", ""), expected)
        elif ok:
            ok = secrets.compare_digest(fields.get("Secret", ""), self.secret)
        if not ok:
            reply("Error", ("Message", "Authentication failed"))
            return False
        session.logged_in = True
        session.events = fields.get("Events", "on").lower() != "off"
        reply("Success", ("Message", "Authentication accepted"))
        self._sessions.add(session)
        session.send(
            _frame(
                [
                    ("Event", "FullyBooted"),
                    ("Privilege", "system,all"),
                    ("Uptime", "2"),
                    ("LastReload", "2"),
                    ("Status", "Fully Booted"),
                ]
            )
        )
        return True

    def _do_logoff(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        reply("Goodbye", ("Message", "Thanks for all the fish."))
        return False

    def user_event(self, name: str, headers: dict[str, str]) -> None:
        """What Asterisk sends every session for the UserEvent dialplan application or AMI action."""
        extra = [(key, value) for key, value in headers.items() if key not in ("Action", "ActionID", "UserEvent")]
        self._broadcast(_frame([("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", name), *extra]))

    def _do_userevent(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        if not fields.get("UserEvent"):
            reply("Error", ("Message", "UserEvent needs a name"))
            return True
        self.user_event(fields["UserEvent"], fields)
        reply("Success", ("Message", "Event Sent"))
        return True

    def _do_ping(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        reply("Success", ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}"))
        return True

    def _do_filter(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        if not self.filter_permitted:
            reply("Error", ("Message", "Permission denied"))
            return True
        if fields.get("Operation", "").lower() != "add":
            reply("Error", ("Message", "Unknown operation"))
            return True
        text = fields.get("Filter", "")
        exclude = text.startswith("!")
        try:
            pattern = _posix_regex(text[1:] if exclude else text)
        except re.error:
            reply("Error", ("Message", "Filter did not compile.  Check the syntax of the filter given."))
            return True
        (session.exclude_filters if exclude else session.include_filters).append(pattern)
        reply("Success", ("Message", "Success"))
        return True

    def _do_events(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        session.events = fields.get("EventMask", "on").lower() != "off"
        reply("Success", ("Events", "On" if session.events else "Off"))
        return True

    def _list(self, session: _Session, action_id: str | None, name: str, rows: list[list[tuple[str, str]]]) -> None:
        aid = [("ActionID", action_id)] if action_id is not None else []
        session.send(
            _frame([("Response", "Success"), *aid, ("EventList", "start"), ("Message", f"{name} will follow")])
        )
        for row in rows:
            session.send(_frame([*row[:1], *aid, *row[1:]]))
        session.send(
            _frame([("Event", f"{name}Complete"), *aid, ("EventList", "Complete"), ("ListItems", str(len(rows)))])
        )

    def _channel_rows(self, event: str) -> list[list[tuple[str, str]]]:
        now = time.monotonic()
        rows = []
        for ch in self.channels.values():
            seconds = int(now - ch.created)
            rows.append(
                [
                    ("Event", event),
                    ("Channel", ch.name),
                    ("ChannelState", ch.state),
                    ("ChannelStateDesc", {"0": "Down", "4": "Ring", "5": "Ringing", "6": "Up"}.get(ch.state, "Up")),
                    ("CallerIDNum", ch.caller_number),
                    ("CallerIDName", ch.caller_name),
                    ("Context", ch.context),
                    ("Exten", ch.exten),
                    ("Uniqueid", ch.uniqueid),
                    ("Linkedid", ch.linkedid),
                    ("Duration", time.strftime("%H:%M:%S", time.gmtime(seconds)))
                    if event == "CoreShowChannel"
                    else ("Seconds", str(seconds)),
                ]
            )
        return rows

    def _do_coreshowchannels(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        self._list(session, fields.get("ActionID"), "CoreShowChannels", self._channel_rows("CoreShowChannel"))
        return True

    def _do_status(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        rows = self._channel_rows("Status")
        # the real PBX starts a Status answer with a plain success line, then the rows, then StatusComplete
        self._list(session, fields.get("ActionID"), "Status", rows)
        return True

    def _do_queuestatus(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        rows: list[list[tuple[str, str]]] = []
        wanted = fields.get("Queue")
        now = time.monotonic()
        for queue, members in self.members.items():
            if wanted and queue != wanted:
                continue
            waiting = [e for e in self.entries.values() if e.queue == queue]
            rows.append(
                [
                    ("Event", "QueueParams"),
                    ("Queue", queue),
                    ("Max", "0"),
                    ("Strategy", "ringall"),
                    ("Calls", str(len(waiting))),
                    ("Holdtime", "0"),
                    ("TalkTime", "0"),
                    ("Completed", str(self.completed[queue])),
                    ("Abandoned", str(self.abandoned[queue])),
                    ("ServiceLevel", "30"),
                    ("ServicelevelPerf", "100.0"),
                    ("ServicelevelPerf2", "100.0"),
                    ("Weight", "0"),
                ]
            )
            for agent, member in members.items():
                rows.append(
                    [
                        ("Event", "QueueMember"),
                        ("Queue", queue),
                        ("Name", f"Agent {agent}"),
                        ("Location", f"Local/{agent}@agents"),
                        *self._member_state(agent, member),
                        ("Wrapuptime", "0"),
                    ]
                )
            for position, entry in enumerate(waiting, start=1):
                rows.append(
                    [
                        ("Event", "QueueEntry"),
                        ("Queue", queue),
                        ("Position", str(position)),
                        ("Channel", entry.channel),
                        ("Uniqueid", entry.uniqueid),
                        ("CallerIDNum", entry.caller_number),
                        ("CallerIDName", entry.caller_name),
                        ("ConnectedLineNum", entry.caller_number),
                        ("ConnectedLineName", entry.caller_name),
                        ("Wait", str(int(now - entry.joined))),
                        ("Priority", "0"),
                    ]
                )
        self._list(session, fields.get("ActionID"), "QueueStatus", rows)
        return True

    def _do_queuesummary(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        rows = []
        now = time.monotonic()
        for queue, members in self.members.items():
            waiting = [e for e in self.entries.values() if e.queue == queue]
            rows.append(
                [
                    ("Event", "QueueSummary"),
                    ("Queue", queue),
                    ("LoggedIn", str(len(members))),
                    ("Available", str(sum(1 for m in members.values() if not m.paused and m.status == 1))),
                    ("Callers", str(len(waiting))),
                    ("HoldTime", "0"),
                    ("TalkTime", "0"),
                    ("LongestHoldTime", str(max((int(now - e.joined) for e in waiting), default=0))),
                ]
            )
        self._list(session, fields.get("ActionID"), "QueueSummary", rows)
        return True

    def _member_state(self, agent: str, member: _Member) -> list[tuple[str, str]]:
        """The headers a QueueMember row and a QueueMember* event share, in Asterisk's order."""
        return [
            ("StateInterface", f"Custom:{agent}"),
            ("Membership", "dynamic"),
            ("Penalty", "0"),
            ("CallsTaken", str(member.calls_taken)),
            ("LastCall", "0"),
            ("LastPause", "0"),
            ("LoginTime", str(self._epoch)),
            ("InCall", "1" if member.status == 2 else "0"),
            ("Status", str(member.status)),
            ("Paused", "1" if member.paused else "0"),
            ("PausedReason", member.reason),
        ]

    def _member_event(self, event: str, queue: str, agent: str, member: _Member) -> None:
        self._broadcast(
            _frame(
                [
                    ("Event", event),
                    ("Privilege", "agent,all"),
                    ("Queue", queue),
                    ("MemberName", f"Agent {agent}"),
                    ("Interface", f"Local/{agent}@agents"),
                    *self._member_state(agent, member),
                    ("Ringinuse", "0"),
                    ("Wrapuptime", "0"),
                ]
            )
        )

    @staticmethod
    def _agent_of_interface(interface: str) -> str | None:
        match = re.match(r"^Local/([^@]+)@agents", interface)
        return match.group(1) if match else None

    def _do_queueadd(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        queue, agent = fields.get("Queue", ""), self._agent_of_interface(fields.get("Interface", ""))
        if queue not in self.members or agent is None:
            reply("Error", ("Message", "Unable to add interface to queue: No such queue"))
            return True
        if agent in self.members[queue]:
            reply("Error", ("Message", "Unable to add interface to queue: Already there"))
            return True
        member = self.members[queue][agent] = _Member()
        reply("Success", ("Message", "Added interface to queue"))
        self._member_event("QueueMemberAdded", queue, agent, member)
        return True

    def _do_queueremove(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        queue, agent = fields.get("Queue", ""), self._agent_of_interface(fields.get("Interface", ""))
        member = self.members.get(queue, {}).pop(agent or "", None)
        if member is None:
            reply("Error", ("Message", "Unable to remove interface: Not there"))
            return True
        reply("Success", ("Message", "Removed interface from queue"))
        self._member_event("QueueMemberRemoved", queue, agent or "", member)
        return True

    def _do_queuepause(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        agent = self._agent_of_interface(fields.get("Interface", ""))
        paused = fields.get("Paused", "").lower() in ("true", "1", "yes")
        queues = [fields["Queue"]] if fields.get("Queue") else list(self.members)
        touched = [(q, self.members[q][agent]) for q in queues if agent and agent in self.members.get(q, {})]
        if not touched:
            reply("Error", ("Message", "Interface not found"))
            return True
        reply("Success", ("Message", f"Interface {'paused' if paused else 'unpaused'} successfully"))
        for queue, member in touched:
            member.paused = paused
            member.reason = fields.get("Reason", "") if paused else ""
            self._member_event("QueueMemberPause", queue, agent or "", member)
        return True

    def _channel_named(self, name: str) -> _Channel | None:
        for channel in self.channels.values():
            if channel.name == name:
                return channel
        return None

    def _do_hangup(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        channel = self._channel_named(fields.get("Channel", ""))
        if channel is None:
            reply("Error", ("Message", "No such channel"))
            return True
        reply("Success", ("Message", "Channel Hungup"))
        consult = self._consults.get(channel.linkedid)
        if consult is not None and consult[0] == channel.name:
            self._complete_attended(channel.linkedid)  # the transferring agent hangs up: the caller goes over
            return True
        agent = _agent_of_channel(channel.name)
        entry = self._queued(channel.linkedid)
        if agent is not None and entry is not None and channel.linkedid not in self._answered_by:
            self._reject(channel.linkedid, agent, entry)  # an agent's ringing leg: the caller stays queued
            return True
        self._end_call(channel.linkedid, cause=fields.get("Cause", "16"))
        return True

    def _queued(self, linkedid: str) -> _Entry | None:
        for uniqueid, entry in self.entries.items():
            channel = self.channels.get(uniqueid)
            if channel is not None and channel.linkedid == linkedid:
                return entry
        return None

    def _hangup_frame(self, channel: _Channel, cause: str, cause_text: str = "Normal Clearing") -> str:
        return _frame(
            [
                ("Event", "Hangup"),
                ("Privilege", "call,all"),
                ("Channel", channel.name),
                ("ChannelState", channel.state),
                ("CallerIDNum", channel.caller_number),
                ("CallerIDName", channel.caller_name),
                ("Context", channel.context),
                ("Exten", channel.exten),
                ("Uniqueid", channel.uniqueid),
                ("Linkedid", channel.linkedid),
                ("Cause", cause),
                ("Cause-txt", cause_text),
            ]
        )

    def _reject(self, linkedid: str, agent: str, entry: _Entry) -> None:
        """An agent hung up while rung: for the queue that member did not answer (AgentRingNoAnswer), the round of
        ringing ends, and the caller, still queued, is offered to the next free member (the same one again after
        the queue's retry when nobody else is free), as app_queue does."""
        task = self._calls.pop(linkedid, None)
        if task is not None:
            task.cancel()
        caller = self.channels.get(entry.uniqueid)
        for channel in [c for c in self.channels.values() if c.linkedid == linkedid]:
            rung = _agent_of_channel(channel.name)
            if rung is None:
                continue
            if rung == agent and channel.name.endswith(";1") and caller is not None:
                self._broadcast(
                    _frame(
                        [
                            ("Event", "AgentRingNoAnswer"),
                            ("Privilege", "agent,all"),
                            ("Channel", caller.name),
                            ("ChannelState", caller.state),
                            ("CallerIDNum", caller.caller_number),
                            ("CallerIDName", caller.caller_name),
                            ("Context", caller.context),
                            ("Exten", caller.exten),
                            ("Uniqueid", caller.uniqueid),
                            ("Linkedid", linkedid),
                            ("DestChannel", channel.name),
                            ("Queue", entry.queue),
                            ("Interface", f"Local/{agent}@agents"),
                            ("MemberName", f"Agent {agent}"),
                            ("RingTime", "1000"),
                        ]
                    )
                )
            self._broadcast(self._hangup_frame(channel, "16" if rung == agent else "26"))
        self._members_idle()
        others = [a for a in self.available_agents(entry.queue) if a != agent]
        template = _template("inbound_queue_answered")
        seq = _CHANNEL_SEQ.search(entry.channel)
        ring, talk = self._pacing.get(linkedid, (2.0, 6.0))
        self._run_call(
            linkedid,
            self._play(
                "inbound_queue_answered",
                linkedid,
                caller_number=entry.caller_number,
                caller_name=entry.caller_name,
                queue=entry.queue,
                agents=tuple(others[:2]) or (agent,),
                answer_after_s=ring,
                talk_s=talk,
                crm_vars={},
                tail_from="ring",
                known_ids={template.caller_uniqueid: entry.uniqueid},
                known_seqs={template.caller_seq: seq.group(1)} if seq else {},
            ),
        )

    def _members_idle(self) -> None:
        """Members with no channel left are not in use any more (their device state says so)."""
        for queue, members in self.members.items():
            for agent, member in members.items():
                if member.status != 1 and not self._busy(agent):
                    member.status = 1
                    self._member_event("QueueMemberStatus", queue, agent, member)

    def _do_blindtransfer(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        channel = self._channel_named(fields.get("Channel", ""))
        if channel is None:
            reply("Error", ("Message", "Channel specified does not exist"))
            return True
        target = fields.get("Exten", "")
        transferer = _agent_of_channel(channel.name)
        caller = self._live_caller(channel.linkedid)
        free = self.available_agents(target)
        if transferer is None or caller is None or target not in self.members or not free:
            reply("Error", ("Message", self._not_playable("blind transfer", target, free)))
            return True
        reply("Success", ("Message", "Transfer succeeded"))
        # as recorded: the caller joins the target queue on the same channels, the member there is rung
        template = _template("transfer_blind")
        ids, seqs = self._continuing(template, channel, caller)
        self._run_call(
            channel.linkedid,
            self._play(
                "transfer_blind",
                channel.linkedid,
                caller_number=caller.caller_number,
                caller_name=caller.caller_name,
                queue="",
                agents=(transferer, free[0]),
                answer_after_s=0.0,
                talk_s=0.0,
                crm_vars={},
                tail_from="transfer",
                known_ids=ids,
                known_seqs=seqs,
                extra=[self._queues_as({"support": self._queue_of(channel.linkedid), "sales": target})],
            ),
        )
        return True

    def _do_atxfer(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        channel = self._channel_named(fields.get("Channel", ""))
        if channel is None:
            reply("Error", ("Message", "No such channel"))
            return True
        target = fields.get("Exten", "")
        transferer = _agent_of_channel(channel.name)
        caller = self._live_caller(channel.linkedid)
        known = any(target in members for members in self.members.values())
        if transferer is None or caller is None or not known or self._busy(target) or target == transferer:
            free = [target] if known and not self._busy(target) else []
            reply("Error", ("Message", self._not_playable("attended transfer", target, free)))
            return True
        reply("Success", ("Message", "Atxfer successfully queued"))
        # as recorded: the caller on hold, the target agent rung from the transferring agent; the transfer completes
        # when the transferring agent hangs up (see _do_hangup)
        template = _template("transfer_attended")
        ids, seqs = self._continuing(template, channel, caller)
        options: dict[str, Any] = {
            "caller_number": caller.caller_number,
            "caller_name": caller.caller_name,
            "queue": "",
            "agents": (transferer, target),
            "answer_after_s": 0.0,
            "talk_s": 0.0,
            "crm_vars": {},
            "known_ids": ids,
            "known_seqs": seqs,
            "extra": [self._queues_as({"support": self._queue_of(channel.linkedid)})],
        }
        self._consults[channel.linkedid] = (channel.name, options)
        self._run_call(
            channel.linkedid,
            self._play("transfer_attended", channel.linkedid, tail_from="transfer", until="complete", **options),
        )
        return True

    def _do_park(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        name = fields.get("Channel", "")
        caller = self._channel_named(name)
        if caller is None:
            reply("Error", ("Message", f"Channel does not exist: {name}"))
            return True
        agent_channel = self._channel_named(fields.get("TimeoutChannel", ""))
        agent = _agent_of_channel(agent_channel.name) if agent_channel is not None else None
        if agent_channel is None or agent is None or caller.linkedid not in self._answered_by:
            reply("Error", ("Message", "The demo PBX parks a queue caller talking to an agent only"))
            return True
        space = next(str(n) for n in itertools.count(701) if str(n) not in self._parked.values())
        self._parked[caller.linkedid] = space
        reply("Success", ("Message", "Park successful"))
        # as recorded: the caller into the parking lot on music, the agent's channels hang up
        template = _template("hold_park")
        ids, seqs = self._continuing(template, agent_channel, caller)
        options: dict[str, Any] = {
            "caller_number": caller.caller_number,
            "caller_name": caller.caller_name,
            "queue": "",
            "agents": (agent,),
            "answer_after_s": 0.0,
            "talk_s": 0.0,
            "crm_vars": {},
            "known_ids": ids,
            "known_seqs": seqs,
            "extra": [
                self._queues_as({"support": self._queue_of(caller.linkedid)}),
                (re.compile(r"(?<=ParkingSpace: )701\b|(?<=Exten: )701\b"), space),
            ],
        }
        self._park_options[caller.linkedid] = options
        self._run_call(
            caller.linkedid,
            self._play("hold_park", caller.linkedid, tail_from="park", until="retrieve", **options),
        )
        return True

    def _pickup(self, agent: str, space: str, reply: Callable[..., None]) -> bool:
        linkedid = next((lid for lid, parked in self._parked.items() if parked == space), None)
        if linkedid is None or self._busy(agent):
            reply("Error", ("Message", "Extension does not exist."))
            return True
        del self._parked[linkedid]
        options = self._park_options.pop(linkedid)
        reply("Success", ("Message", "Originate successfully queued"))
        # as recorded: the agent's device rings, answers, and is bridged with the parked caller; the call goes on
        options["agents"] = (agent,)
        options["talk_s"] = self._pacing.get(linkedid, (0.0, 0.0))[1]  # the rest of the call as it was asked for
        self._run_call(linkedid, self._play("hold_park", linkedid, tail_from="retrieve", **options))
        return True

    def _complete_attended(self, linkedid: str) -> None:
        _transferer, options = self._consults.pop(linkedid)
        self._run_call(linkedid, self._play("transfer_attended", linkedid, tail_from="complete", **options))

    @staticmethod
    def _not_playable(what: str, target: str, free: list[str]) -> str:
        if not free:
            return f"Nobody is free at {target!r} to take the {what} (demo PBX)"
        return f"The demo PBX plays a {what} of a queue call answered by an agent only"

    @staticmethod
    def _queues_as(names: dict[str, str]) -> tuple[re.Pattern[str], Any]:
        """The recording's queue names as this call's, in one pass (support → sales and sales → support swap)."""
        pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b")
        return pattern, lambda m: names[m.group(1)]

    def _queue_of(self, linkedid: str) -> str:
        return self._queue_by_call.get(linkedid, "support")

    def _live_caller(self, linkedid: str) -> _Channel | None:
        """The queue caller's channel of a call (the `;2` half of the PSTN Local channel)."""
        for channel in self.channels.values():
            if channel.linkedid == linkedid and "@from-pstn-" in channel.name and channel.name.endswith(";2"):
                return channel
        return None

    def _continuing(
        self, template: _Template, agent: _Channel, caller: _Channel
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Ids and channel numbers of the recording mapped to this call's: its caller and the agent talking to it."""
        ids = {template.caller_uniqueid: caller.uniqueid}
        seqs: dict[str, str] = {}
        for recorded, live in ((template.agent_channel, agent.name), (f"-{template.caller_seq};2", caller.name)):
            old, new = _CHANNEL_SEQ.search(recorded), _CHANNEL_SEQ.search(live)
            if old and new:
                seqs[old.group(1)] = new.group(1)
        for half in (";1", ";2"):
            recorded_uid = template.uniqueids.get(template.agent_channel[:-2] + half, "")
            live_half = self._channel_named(agent.name[:-2] + half)
            if recorded_uid and live_half is not None:
                ids[recorded_uid] = live_half.uniqueid
        return ids, seqs

    def _do_redirect(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        name = fields.get("Channel", "")
        if self._channel_named(name) is None:
            reply("Error", ("Message", f"Channel does not exist: {name}"))
            return True
        reply("Success", ("Message", "Redirect successful"))
        return True

    def _do_originate(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        channel = fields.get("Channel", "")
        if not channel:
            reply("Error", ("Message", "Channel not specified"))
            return True
        agent = self._agent_of_interface(channel)
        if agent is None:
            reply("Error", ("Message", "Originate failed"))
            return True
        if fields.get("Application"):
            reply("Success", ("Message", "Originate successfully queued"))
            return True
        if fields.get("Context") == "parkedcalls":
            return self._pickup(agent, fields.get("Exten", ""), reply)
        if fields.get("Context") not in ("outbound", "internal", "agents"):
            reply("Error", ("Message", "Extension does not exist."))
            return True
        reply("Success", ("Message", "Originate successfully queued"))
        number = fields.get("Exten", "")
        linkedid = self._new_id()
        self._run_call(
            linkedid,
            self._play(
                "click_to_dial",
                linkedid,
                caller_number=number,
                caller_name="",
                queue="",
                agents=(agent,),
                answer_after_s=2.0,
                talk_s=6.0,
                crm_vars={},
                originate=(fields.get("ActionID"), agent, number),
            ),
        )
        return True

    def _do_getvar(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        name = fields.get("Channel")
        if name and self._channel_named(name) is None:
            reply("Error", ("Message", "No such channel"))
            return True
        reply("Success", ("Variable", fields.get("Variable", "")), ("Value", ""))
        return True

    def _do_command(self, session: _Session, fields: dict[str, str], reply: Callable[..., None]) -> bool:
        command = fields.get("Command", "")
        if command == "core show version":
            reply(
                "Success",
                ("Message", "Command output follows"),
                ("Output", "Asterisk 22 (crm demo PBX) built for the contact-center CRM"),
            )
        else:
            reply(
                "Error",
                ("Message", "Command output follows"),
                (
                    "Output",
                    f"No such command '{command}' (type 'core show help {command}' for other possible commands)",
                ),
            )
        return True

    # --- events -----------------------------------------------------------------------------------------------

    def _broadcast(self, frame: str) -> None:
        headers = _headers(frame)
        self._observe(headers)
        hook = self.on_frame_sent
        readable = self.read_classes is None or bool(_classes(headers.get("Privilege", "")) & self.read_classes)
        for session in self._sessions:
            if readable and session.events and session.wants(frame):
                session.send(frame)
        if hook is not None:
            hook(headers.get("Event", ""), headers, time.perf_counter_ns())

    def _write_recording(self, name: str, started: float) -> None:
        if self.recordings_dir is None or not re.fullmatch(r"[A-Za-z0-9._-]+\.wav", name):
            return
        seconds = min(60.0, max(1.0, time.monotonic() - started))  # whole seconds of a 425 Hz tone
        target = self.recordings_dir / name

        def write() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".part")
            with wave.open(str(partial), "wb") as audio:
                audio.setnchannels(1)
                audio.setsampwidth(2)
                audio.setframerate(8000)
                audio.writeframes(_tone_second() * round(seconds))
            partial.replace(target)  # whole or not at all, as a player must never get half a file

        def written(done: asyncio.Future[None]) -> None:
            if done.exception() is not None:
                log.warning("the demo PBX could not write the recording %s: %s", name, done.exception())

        writing = asyncio.get_running_loop().run_in_executor(None, write)
        self._writing.add(writing)
        writing.add_done_callback(self._writing.discard)
        writing.add_done_callback(written)

    async def recordings_written(self) -> None:
        """Wait until the recordings of the calls hung up so far are on disk."""
        if self._writing:
            await asyncio.wait(list(self._writing))

    def _observe(self, h: dict[str, str]) -> None:
        """Keep the model the resync lists are answered from in step with the events sent."""
        event = h.get("Event")
        uniqueid = h.get("Uniqueid", "")
        if event == "Newchannel":
            agent = _agent_of_channel(h.get("Channel", ""))
            if agent is not None:
                self._agent_channels[agent] = self._agent_channels.get(agent, 0) + 1
            self.channels[uniqueid] = _Channel(
                h.get("Channel", ""),
                uniqueid,
                h.get("Linkedid", uniqueid),
                h.get("ChannelState", "0"),
                h.get("CallerIDNum", ""),
                h.get("CallerIDName", ""),
                h.get("Context", ""),
                h.get("Exten", ""),
            )
        elif event in ("Newstate", "NewCallerid", "Newexten") and uniqueid in self.channels:
            channel = self.channels[uniqueid]
            channel.state = h.get("ChannelState", channel.state)
            channel.caller_number = h.get("CallerIDNum", channel.caller_number)
            channel.caller_name = h.get("CallerIDName", channel.caller_name)
            channel.context = h.get("Context", channel.context)
            channel.exten = h.get("Exten", channel.exten)
        elif event == "BridgeEnter" and uniqueid in self.channels:
            # bridged into a call, a channel takes on its Linkedid (the pickup of a parked caller does)
            self.channels[uniqueid].linkedid = h.get("Linkedid", self.channels[uniqueid].linkedid)
        elif event == "VarSet" and h.get("Variable") == "MIXMONITOR_FILENAME" and self.recordings_dir is not None:
            self._recording[uniqueid] = (h.get("Value", "").rsplit("/", 1)[-1], time.monotonic())
        elif event == "Hangup":
            recorded = self._recording.pop(uniqueid, None)
            if recorded is not None:
                self._write_recording(*recorded)
            gone = self.channels.pop(uniqueid, None)
            if uniqueid == h.get("Linkedid"):
                self._answered_by.pop(uniqueid, None)
                self._pacing.pop(uniqueid, None)
                self._queue_by_call.pop(uniqueid, None)
                self._consults.pop(uniqueid, None)
                self._parked.pop(uniqueid, None)
                self._park_options.pop(uniqueid, None)
            agent = _agent_of_channel(gone.name) if gone is not None else None
            if agent is not None and self._agent_channels.get(agent, 0) > 0:
                self._agent_channels[agent] -= 1
            self.entries.pop(uniqueid, None)
        elif event == "QueueCallerJoin":
            self._queue_by_call[h.get("Linkedid", "")] = h.get("Queue", "")
            self.entries[uniqueid] = _Entry(
                h.get("Queue", ""), uniqueid, h.get("Channel", ""), h.get("CallerIDNum", ""), h.get("CallerIDName", "")
            )
        elif event == "QueueCallerLeave":
            self.entries.pop(uniqueid, None)
        elif event == "QueueCallerAbandon":
            self.abandoned[h.get("Queue", "")] = self.abandoned.get(h.get("Queue", ""), 0) + 1
        elif event == "AgentConnect":
            self.completed[h.get("Queue", "")] = self.completed.get(h.get("Queue", ""), 0) + 1
            self._answered_by[h.get("Linkedid", "")] = self._agent_of_interface(h.get("Interface", "")) or ""
        elif event == "QueueMemberStatus":
            agent = self._agent_of_interface(h.get("Interface", ""))
            member = self.members.get(h.get("Queue", ""), {}).get(agent or "")
            if member is not None:
                member.status = int(h.get("Status", "1") or 1)

    def _new_id(self) -> str:
        return f"{self._epoch}.{next(self._ids) + 100000}"

    # --- calls ------------------------------------------------------------------------------------------------

    def available_agents(self, queue: str) -> list[str]:
        return [
            agent
            for agent, member in self.members.get(queue, {}).items()
            if not member.paused and member.status == 1 and not self._busy(agent)
        ]

    def _busy(self, agent: str) -> bool:
        return self._agent_channels.get(agent, 0) > 0

    async def place_inbound_call(
        self,
        caller_number: str,
        caller_name: str,
        queue: str = "support",
        *,
        answer_after_s: float = 2.0,
        talk_s: float = 6.0,
        crm_vars: dict[str, str] | None = None,
        abandon_after_s: float | None = None,
        agent: str | None = None,
        ivr_done: asyncio.Event | None = None,
    ) -> str:
        """Start a caller's call through the IVR into `queue`; returns its Linkedid. The call plays on its own. With
        `ivr_done`, the caller reaches the queue once it is set (an IVR session run elsewhere, on its channel)."""
        if queue not in self.members:
            raise ValueError(f"the demo PBX has no queue {queue!r}")
        free = [agent] if agent else self.available_agents(queue)
        linkedid = self._new_id()
        self.calls_placed += 1
        self._pacing[linkedid] = (answer_after_s, talk_s)
        if abandon_after_s is not None or not free:
            wait = abandon_after_s if abandon_after_s is not None else 20.0
            ringing = tuple(a for a in self.members[queue] if not self.members[queue][a].paused)[:2] or ("1001",)
            task = self._play(
                "inbound_abandoned",
                linkedid,
                caller_number=caller_number,
                caller_name=caller_name,
                queue=queue,
                agents=ringing if free else (),
                answer_after_s=wait,
                talk_s=0.0,
                crm_vars=crm_vars or {},
            )
        else:
            others = tuple(a for a in self.available_agents(queue) if a != free[0])[:1]
            task = self._play(
                "inbound_queue_answered",
                linkedid,
                caller_number=caller_number,
                caller_name=caller_name,
                queue=queue,
                agents=(free[0], *others),
                answer_after_s=answer_after_s,
                talk_s=talk_s,
                crm_vars=crm_vars or {},
                ivr_done=ivr_done,
            )
        self._run_call(linkedid, task)
        return linkedid

    def _run_call(self, linkedid: str, script: Any) -> None:
        """Play `script` as the call's events; it replaces what the call was playing (a transfer, a reject)."""
        previous = self._calls.get(linkedid)
        if previous is not None:
            previous.cancel()
        task = asyncio.create_task(script, name=f"demo-call-{linkedid}")
        self._calls[linkedid] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._calls.get(linkedid) is done:
                del self._calls[linkedid]

        task.add_done_callback(forget)

    async def wait_call(self, linkedid: str) -> None:
        task = self._calls.get(linkedid)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def start_traffic(
        self, calls_per_s: float, callers: list[tuple[str, str]] | None = None, *, talk_s: float = 6.0
    ) -> None:
        """Callers arriving at random (Poisson) at `calls_per_s`, alternating between the queues."""

        if callers:
            self.callers = list(callers)

        async def run() -> None:
            queues = itertools.cycle(sorted(self.members))
            while True:
                await asyncio.sleep(self._rng.expovariate(calls_per_s))
                number, name = self._rng.choice(self.callers)
                await self.place_inbound_call(
                    number,
                    name,
                    next(queues),
                    answer_after_s=self._rng.uniform(1.0, 4.0),
                    talk_s=self._rng.uniform(talk_s / 2, talk_s * 1.5),
                )

        self._traffic = asyncio.create_task(run(), name="demo-traffic")

    async def stop_traffic(self) -> None:
        if self._traffic is not None:
            self._traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._traffic
            self._traffic = None

    def _end_call(self, linkedid: str, cause: str = "16") -> None:
        task = self._calls.pop(linkedid, None)
        if task is not None:
            task.cancel()
        for uniqueid, entry in list(self.entries.items()):
            channel = self.channels.get(uniqueid)
            if channel is not None and channel.linkedid == linkedid:
                self._broadcast(
                    _frame(
                        [
                            ("Event", "QueueCallerAbandon"),
                            ("Privilege", "agent,all"),
                            ("Channel", channel.name),
                            ("Uniqueid", uniqueid),
                            ("Linkedid", linkedid),
                            ("Queue", entry.queue),
                            ("Position", "1"),
                            ("OriginalPosition", "1"),
                            ("HoldTime", str(int(time.monotonic() - entry.joined))),
                        ]
                    )
                )
                self._broadcast(
                    _frame(
                        [
                            ("Event", "QueueCallerLeave"),
                            ("Privilege", "agent,all"),
                            ("Channel", channel.name),
                            ("Uniqueid", uniqueid),
                            ("Linkedid", linkedid),
                            ("Queue", entry.queue),
                            ("Count", "0"),
                            ("Position", "1"),
                        ]
                    )
                )
        ending = [c for c in self.channels.values() if c.linkedid == linkedid]
        halves = {c.name[:-2] for c in ending if c.name.endswith((";1", ";2"))}
        # the other half of a Local channel goes too, even with a Linkedid of its own (an originated pickup's `;2`)
        ending += [c for c in self.channels.values() if c.linkedid != linkedid and c.name[:-2] in halves]
        for channel in ending:
            self._broadcast(
                _frame(
                    [
                        ("Event", "Hangup"),
                        ("Privilege", "call,all"),
                        ("Channel", channel.name),
                        ("ChannelState", channel.state),
                        ("CallerIDNum", channel.caller_number),
                        ("CallerIDName", channel.caller_name),
                        ("Context", channel.context),
                        ("Exten", channel.exten),
                        ("Uniqueid", channel.uniqueid),
                        ("Linkedid", linkedid),
                        ("Cause", cause),
                        ("Cause-txt", "Normal Clearing"),
                    ]
                )
            )
        for queue, members in self.members.items():
            for agent, member in members.items():
                if member.status != 1 and not self._busy(agent):
                    member.status = 1
                    self._member_event("QueueMemberStatus", queue, agent, member)

    def _timeline(self, template: _Template, answer_after_s: float, talk_s: float) -> Callable[[float], float]:
        """Recorded time → seconds after the call starts here, stretching ring and talk to what was asked."""
        marks = template.marks
        start = marks["start"]
        join = marks.get("join", start)
        answer = marks.get("connect") or marks.get("far_answer") or marks["end"]
        end = marks["end"]
        ivr = (join - start) * 0.5  # a snappier IVR than the recording's silence and read timeout

        def when(t: float) -> float:
            if t <= join:
                return (t - start) * 0.5
            if t <= answer:
                return ivr + (t - join) / max(answer - join, 1e-6) * answer_after_s
            return ivr + answer_after_s + (t - answer) / max(end - answer, 1e-6) * talk_s

        return when

    async def _play(
        self,
        name: str,
        linkedid: str,
        *,
        caller_number: str,
        caller_name: str,
        queue: str,
        agents: tuple[str, ...],
        answer_after_s: float,
        talk_s: float,
        crm_vars: dict[str, str],
        originate: tuple[str | None, str, str] | None = None,
        tail_from: str | None = None,
        until: str | None = None,
        known_ids: dict[str, str] | None = None,
        known_seqs: dict[str, str] | None = None,
        extra: list[tuple[re.Pattern[str], Any]] | None = None,
        ivr_done: asyncio.Event | None = None,
    ) -> None:
        """Play a recorded call template as a new call. With `tail_from` (a mark of the template) only what follows
        it, for a call already under way: `known_ids`/`known_seqs` map the template's ids and channel numbers to
        those the call has (its caller, say), so the rest continues the same channels."""
        template = _template(name)
        # shared with the caller's dicts: the second part of a transfer goes on with the first part's channels
        ids: dict[str, str] = known_ids if known_ids is not None else {}
        seqs: dict[str, str] = known_seqs if known_seqs is not None else {}
        first_id = _ID.search(template.frames[0].text)
        if first_id:
            ids[first_id.group(0)] = linkedid

        def new_id(match: re.Match[str]) -> str:
            old = match.group(0)
            if old not in ids:
                ids[old] = self._new_id()
            return ids[old]

        def new_seq(match: re.Match[str]) -> str:
            old = match.group(1)
            if old not in seqs:
                seqs[old] = f"{next(self._channel_seq) % 0xFFFFFFFF:08x}"
            return f"-{seqs[old]};{match.group(2)}"

        replacements: list[tuple[re.Pattern[str], Any]] = []
        dropped: list[str] = []
        agent_map = {old: agents[i] for i, old in enumerate(template.agents) if i < len(agents)}
        dropped = [old for i, old in enumerate(template.agents) if i >= len(agents)]
        if agent_map:
            # one pass for all agents, so swapping 1001 and 1002 does not turn both into one
            pattern = re.compile(r"(?<![\d.])(" + "|".join(re.escape(a) for a in agent_map) + r")(?![\d])")
            replacements.append((pattern, lambda m: agent_map[m.group(1)]))
        if template.caller_number:
            replacements.append((re.compile(re.escape(template.caller_number)), caller_number))
        if template.caller_name:
            replacements.append((re.compile(re.escape(template.caller_name)), caller_name or caller_number))
        if template.queue and queue and queue != template.queue:
            replacements.append((re.compile(rf"\b{re.escape(template.queue)}\b"), queue))
        replacements.extend(extra or [])
        drop = re.compile("|".join(rf"Local/{a}@agents|Custom:{a}\b|Agent {a}\b" for a in dropped)) if dropped else None
        origin = template.marks[tail_from] if tail_from else template.marks["start"]
        end = template.marks[until] if until else math.inf
        timeline: Callable[[float], float]
        if tail_from is not None and tail_from != "ring":
            # what a transfer or a hold caused plays at the recorded pace (ring the target 2 s, talk 5 s …); with
            # `talk_s`, the longest silence of it (the talk) lasts that long instead
            times = sorted({f.t for f in template.frames if origin <= f.t < end})
            gap_at, silence = math.inf, 0.0
            if talk_s > 0 and len(times) > 1:
                gap_at, gap_end = max(itertools.pairwise(times), key=lambda pair: pair[1] - pair[0])
                silence = gap_end - gap_at

            def timeline(t: float) -> float:
                return t if t <= gap_at else t - silence + talk_s

            offset = origin
        else:
            timeline = self._timeline(template, answer_after_s, talk_s)
            offset = timeline(origin) if tail_from else 0.0

        def when(t: float) -> float:
            return timeline(t) - offset

        started = time.monotonic()
        crm_slots = sum(
            1
            for f in template.frames
            if f.headers.get("Event") == "VarSet" and f.headers.get("Variable", "").startswith("CRM_")
        )
        crm_items = sorted(crm_vars.items())
        crm_slot = 0
        # write the whole script first (ids, names, numbers rewritten), so that playing it is nothing but writes:
        # the regex work must not sit between a frame and the bridge that reads it
        # the frames to send, rewritten in one pass over the whole text (a regex call per frame costs too much)
        kept = [
            f
            for f in template.frames
            if origin <= f.t < end
            and not (drop is not None and drop.search(f.text))
            and not (originate is not None and f.headers.get("Event") == "OriginateResponse")
        ]
        joined = "\x1e".join(f.text for f in kept)
        joined = _ID.sub(new_id, _CHANNEL_SEQ.sub(new_seq, joined))
        for pattern, value in replacements:
            joined = pattern.sub(value, joined)
        script: list[tuple[float, str]] = []
        for frame, text in zip(kept, joined.split("\x1e"), strict=True):
            headers = frame.headers
            at = when(frame.t) * self.time_scale
            if headers.get("Event") == "VarSet" and headers.get("Variable", "").startswith("CRM_"):
                # the i-th CRM_ variable the recorded IVR set becomes the i-th asked for; the last takes the rest
                crm_slot += 1
                mine = crm_items[crm_slot - 1 : crm_slot] if crm_slot < crm_slots else crm_items[crm_slot - 1 :]
                for variable, value in mine:
                    frame_text = re.sub(r"Variable: [^\r\n]*", f"Variable: {variable}", text)
                    script.append((at, re.sub(r"Value: [^\r\n]*", f"Value: {value}", frame_text)))
                continue
            script.append((at, text))
            if originate is not None and headers.get("Event") == "DialEnd" and not headers.get("Channel"):
                action_id, agent, number = originate
                script.append(
                    (
                        at,
                        _frame(
                            [
                                ("Event", "OriginateResponse"),
                                ("Privilege", "call,all"),
                                *([("ActionID", action_id)] if action_id else []),
                                ("Response", "Success"),
                                ("Channel", f"Local/{agent}@agents"),
                                ("Context", "outbound"),
                                ("Exten", number),
                                ("Application", ""),
                                ("Data", ""),
                                ("Reason", "4"),
                                ("Uniqueid", linkedid),
                                ("CallerIDNum", agent),
                                ("CallerIDName", f"Agent {agent}"),
                            ]
                        ),
                    )
                )
        # events due at the same moment go out together, then the loop gets its turn (the bridge reads them)
        queued_at = when(template.marks["join"]) * self.time_scale if "join" in template.marks else math.inf
        index = 0
        while index < len(script):
            at = script[index][0]
            if ivr_done is not None and at >= queued_at:
                # the dialplan goes on to Queue() only when the AGI session is over, as Asterisk's AGI() does
                waited = time.monotonic()
                await ivr_done.wait()
                started += time.monotonic() - waited
                ivr_done = None
            await self._wait_until(started + at)
            while index < len(script) and script[index][0] <= at:
                self._send_played(script[index][1])
                index += 1
            await asyncio.sleep(0)
        for queue_name, members in self.members.items():
            for agent in agents:
                if agent in members and queue_name == queue:
                    members[agent].calls_taken += 1

    def _send_played(self, frame: str) -> None:
        """A frame of a played template as the PBX would send it now: a member's status carries the pause it has
        here (a recording's `Paused: 0` must not unpause a paused agent), once per queue the agent is logged in to,
        and not at all for an agent logged out of every queue."""
        if not frame.startswith(_MEMBER_STATUS):
            self._broadcast(frame)
            return
        agent = self._agent_of_interface(_headers(frame).get("Interface", ""))
        for queue, members in self.members.items():
            member = members.get(agent or "")
            if member is None:
                continue
            text = _MEMBER_QUEUE.sub(f"Queue: {queue}", frame, count=1)
            text = _MEMBER_PAUSED.sub(f"Paused: {1 if member.paused else 0}", text, count=1)
            self._broadcast(_MEMBER_REASON.sub(f"PausedReason: {member.reason}", text, count=1))

    @staticmethod
    async def _wait_until(deadline: float) -> None:
        delay = deadline - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    # --- recorded traces --------------------------------------------------------------------------------------

    async def replay(self, frames: list[TraceFrame], *, paced: bool = False) -> int:
        """Send a recorded trace's events to every logged-in client (its responses belong to its own actions)."""
        sent = 0
        started = time.monotonic()
        first = frames[0].t if frames else 0.0
        for frame in frames:
            if "Event" not in frame.headers or frame.headers["Event"] in ("FullyBooted", "SuccessfulAuth"):
                continue
            if paced:
                await self._wait_until(started + (frame.t - first) * self.time_scale)
            self._broadcast(frame.text)
            sent += 1
            if sent % 200 == 0:
                await asyncio.sleep(0)  # let the clients read
        for session in self._sessions:
            await session.writer.drain()
        return sent
