"""The AMI connection: panoramisk's protocol and actions, a fast event path, keep-alive, reconnect with backoff.

This is the only module that imports panoramisk. Actions and their responses go through panoramisk's
`AMIProtocol.send`, `Action` and `Message`. Events take a shorter path: each received chunk is split into frames
here, and the frames go as plain header dicts onto an asyncio queue drained by one supervised task (the
bridge's), because panoramisk would run our coroutine callbacks without keeping a reference and parse every event
into a case-insensitive mapping first (bench/ami_throughput.py measures both).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from cti_bridge.adapter import CommandError, CommandErrorCode
from cti_bridge.normalize import MAX_FRAME_BYTES, MalformedFrame, parse_frame

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/"
FRAME_END = b"\r\n\r\n"

# what the connection hands to its consumer: (monotonic ns when the chunk arrived, the frames' headers)
Frames = tuple[int, list[dict[str, str]]]


class AmiError(Exception):
    """Something went wrong talking to the PBX; the message is one sentence for a person."""


class AmiUnreachable(AmiError):
    pass


class AmiLoginFailed(AmiError):
    pass


@dataclass(frozen=True)
class AmiEndpoint:
    host: str
    port: int
    username: str
    secret: str
    tls: bool = False

    def __repr__(self) -> str:  # never print the secret
        return f"AmiEndpoint({self.username}@{self.host}:{self.port}, tls={self.tls})"


def parse_ami_url(url: str) -> AmiEndpoint:
    """`ami://user:secret@host:5038`; `amis://` or `ami+tls://` for TLS (default port 5039)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ami", "amis", "ami+tls"):
        raise ValueError(f"an AMI URL starts with ami:// or amis://, not {parts.scheme or 'nothing'}://")
    if not parts.hostname or not parts.username or parts.password is None:
        raise ValueError("an AMI URL needs user, secret and host: ami://user:secret@host:5038")
    tls = parts.scheme != "ami"
    return AmiEndpoint(
        host=parts.hostname,
        port=parts.port or (5039 if tls else 5038),
        username=unquote(parts.username),
        secret=unquote(parts.password),
        tls=tls,
    )


# --- the one gate of every action ------------------------------------------------------------------------------

MAX_VALUE_CHARS = 256  # a pause reason, a number, a channel name: none comes near it
# the bridge's own long values: its AMI event filter (a regex of ~600 characters)
_MAX_CHARS_OF = {"filter": 2048}
_HEADER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
# Asterisk ends a header line at CRLF or at a bare LF, and an action at an empty line: any of these in a value would
# start a header or a whole action of the sender's choosing. The other C0/C1 controls (NUL, ESC …) never belong in
# a header either.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# what a person calls each header, for the one sentence that refuses it
_FIELD_WORDS = {
    "actionid": "action ID",
    "callerid": "caller ID",
    "channel": "channel",
    "context": "dialplan context",
    "data": "application data",
    "exten": "number or extension",
    "filter": "event filter",
    "interface": "agent interface",
    "membername": "queue member name",
    "queue": "queue name",
    "reason": "pause reason",
    "secret": "AMI secret",
    "stateinterface": "agent state interface",
    "username": "AMI user name",
    "variable": "channel variable",
}


def _field_words(header: str) -> str:
    return _FIELD_WORDS.get(header.lower(), f"{header} value")


def check_action(fields: Mapping[str, Any]) -> None:
    """Refuse an action that would not reach the PBX as exactly the one action it says: a header name that is not a
    plain word, or a value with a line break or another control character, or longer than a PBX field can be.

    Every action the bridge sends passes here (AmiConnection._send), whoever built it, so a builder that forgets to
    check a value (a pause reason, a caller ID, a channel read from the PBX) cannot let a user add a header or a
    second action. Raises CommandError(INVALID) naming the field.
    """
    action = str(fields.get("Action") or fields.get("action") or "the action")
    for header, raw in fields.items():
        if not isinstance(header, str) or not _HEADER_NAME.fullmatch(header):
            raise CommandError(CommandErrorCode.INVALID, f"{str(header)[:40]!r} is not an AMI header name.")
        limit = _MAX_CHARS_OF.get(header.lower(), MAX_VALUE_CHARS)
        for value in raw if isinstance(raw, (list, tuple)) else (raw,):
            text = value if isinstance(value, str) else str(value)
            if _CONTROL.search(text):
                log.warning("refused to send %s: its %s header holds a control character", action[:40], header)
                raise CommandError(
                    CommandErrorCode.INVALID,
                    f"The {_field_words(header)} may not contain line breaks or other control characters.",
                )
            if len(text) > limit:
                log.warning("refused to send %s: its %s header is %d characters long", action[:40], header, len(text))
                raise CommandError(
                    CommandErrorCode.INVALID,
                    f"The {_field_words(header)} is too long (at most {limit} characters).",
                )


def message_headers(message: Any) -> dict[str, str]:
    """A panoramisk Message as a plain dict (the first value of a repeated header)."""
    return {k: (v[0] if isinstance(v, list) else str(v)) for k, v in message.items()}


READ_SIZE = 16 * 1024  # bytes per read: a burst is handed on in slices of ~40 events, not 256 KB at once


class _BridgeProtocol(AMIProtocol, asyncio.BufferedProtocol):  # type: ignore[misc]
    """panoramisk's protocol with our own frame splitter; responses still resolve panoramisk's action futures.

    It reads into a buffer of its own size (BufferedProtocol), so that under a burst the event loop gets back to
    the bridge's consumer after every 16 KB instead of after asyncio's default 256 KB: the first frames of a read
    are then tracked, and a pop published, within a fraction of a millisecond of their arrival.
    """

    def __init__(self, connection: AmiConnection) -> None:
        self._connection = connection
        self._buffer = b""
        self._read_buffer = bytearray(READ_SIZE)
        # a memoryview, not the bytearray: asyncio's TLS layer fills `buffer[offset:]`, which on a bytearray is a
        # copy, and the bytes read would be lost (found with the AMI-over-TLS test)
        self._read_view = memoryview(self._read_buffer)
        self.banner: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._read_buffer[:nbytes]))

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.encoding = "utf-8"

    def data_received(self, data: bytes) -> None:
        arrived = time.perf_counter_ns()
        buffer = self._buffer + data if self._buffer else data
        if not self.banner.done():
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                self._buffer = buffer
                return
            first = buffer[:line_end].decode("utf-8", "replace")
            if not first.startswith(BANNER.decode()):
                self.banner.set_exception(AmiError(f"the server did not greet as Asterisk AMI: {first[:60]!r}"))
                self.transport.close()
                return
            self.banner.set_result(first.partition("/")[2])
            buffer = buffer[line_end + 2 :]
        end = buffer.rfind(FRAME_END)
        if end < 0:
            if len(buffer) > MAX_FRAME_BYTES:
                log.warning("dropped %d bytes of AMI data without a frame end (oversized frame)", len(buffer))
                buffer = b""
            self._buffer = buffer
            return
        self._buffer = buffer[end + 4 :]
        text = buffer[:end].decode("utf-8", "replace")
        events: list[dict[str, str]] = []
        for frame in text.split("\r\n\r\n"):
            if not frame:
                continue
            if len(frame) > MAX_FRAME_BYTES:
                log.warning("dropped an oversized AMI frame (%d bytes)", len(frame))
                continue
            try:
                headers = parse_frame(frame.strip("\r\n"))
            except MalformedFrame as exc:
                log.warning("dropped a malformed AMI frame: %s", exc)
                continue
            action_id = headers.get("ActionID")
            if action_id is not None and action_id in self.responses:
                message = Message.from_line(frame.strip("\r\n"))
                if message is not None:
                    self.handle_message(message)
                continue
            if "Event" in headers:
                events.append(headers)
        if events:
            self._connection.frames_received(arrived, events)

    def handle_message(self, message: Any) -> None:
        response = self.responses.get(message.id)
        if response is None and message.action_id:
            response = self.responses.get(message.action_id)
        if response is not None and response.add_message(message):
            self.responses.pop(response.id, None)
            if response.action_id:
                self.responses.pop(response.action_id, None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for action in list(self.responses.values()):
            if not action.future.done():
                action.future.set_exception(AmiUnreachable("the connection to the PBX was lost"))
        self.responses.clear()
        if not self.banner.done():
            self.banner.set_exception(AmiUnreachable("the PBX closed the connection before its greeting"))
        self._connection.connection_lost(self)


class AmiConnection:
    """One AMI session that logs in, pings, and reconnects (exponential backoff with jitter) until stopped."""

    def __init__(
        self,
        endpoint: AmiEndpoint,
        *,
        on_frames: Callable[[Frames], None],
        on_login: Callable[[], Awaitable[None]],
        on_lost: Callable[[], None],
        ping_interval: float = 20.0,
        action_timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._on_frames = on_frames
        self._on_login = on_login
        self._on_lost = on_lost
        self._ping_interval = ping_interval
        self._action_timeout = action_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._ssl = ssl_context if ssl_context is not None else (ssl.create_default_context() if endpoint.tls else None)
        self._protocol: _BridgeProtocol | None = None
        self._lost: asyncio.Event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.disconnected.set()
        self.login_refused = asyncio.Event()  # set while the PBX refuses our credentials
        self.attempt_failed = asyncio.Event()  # set after any failed connection attempt (health page, tests)
        self.connects = 0  # successful logins, for tests and the health page
        self.last_error: str | None = None
        self.version: str | None = None

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="ami-connection")

    async def stop(self) -> None:
        self._stopping = True
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            try:
                await asyncio.wait_for(self._send({"Action": "Logoff"}), timeout=1.0)
            except (AmiError, TimeoutError):
                pass
            protocol.transport.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        delay = self._backoff_initial
        while not self._stopping:
            try:
                await self._connect_once()
                delay = self._backoff_initial
                self.last_error = None
                await self._on_login()
                await self._lost.wait()
            except asyncio.CancelledError:
                raise
            except AmiLoginFailed as exc:
                self.last_error = str(exc)
                self.login_refused.set()
                log.error("%s", exc)
                delay = self._backoff_max  # a wrong secret will not fix itself in half a second
            except (OSError, TimeoutError, AmiError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                self.attempt_failed.set()
                log.warning("AMI %s:%s unreachable: %s", self.endpoint.host, self.endpoint.port, self.last_error)
            except Exception:
                self.last_error = "the bridge failed while resynchronising"
                log.exception("AMI session failed")
            finally:
                self._drop()
            if self._stopping:
                break
            pause = delay * (0.5 + random.random())  # jitter: many bridges must not reconnect in step
            log.info("reconnecting to AMI in %.2f s", pause)
            await asyncio.sleep(pause)
            delay = min(delay * 2, self._backoff_max)

    async def _connect_once(self) -> None:
        loop = asyncio.get_running_loop()
        self._lost = asyncio.Event()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(
                lambda: _BridgeProtocol(self),
                self.endpoint.host,
                self.endpoint.port,
                ssl=self._ssl,
                server_hostname=self.endpoint.host if self._ssl else None,
            ),
            timeout=self._action_timeout,
        )
        self._protocol = protocol
        self.version = await asyncio.wait_for(protocol.banner, timeout=self._action_timeout)
        try:
            response = await self._send(
                {"Action": "Login", "Username": self.endpoint.username, "Secret": self.endpoint.secret, "Events": "on"}
            )
        except CommandError as exc:  # a user name or secret with a line break in it: the setting is wrong
            raise AmiLoginFailed(f"the AMI login cannot be sent ({exc.detail}); check CRM_AMI_URL") from None
        headers = message_headers(response)
        if headers.get("Response") != "Success":
            raise AmiLoginFailed(
                f"the PBX refused the AMI login of {self.endpoint.username!r}: {headers.get('Message', 'no reason')}"
            )
        self.connects += 1
        self.login_refused.clear()
        self.disconnected.clear()
        self.connected.set()
        self._pinger = asyncio.create_task(self._ping(protocol), name="ami-ping")

    async def _ping(self, protocol: _BridgeProtocol) -> None:
        while not protocol.closed:
            await asyncio.sleep(self._ping_interval)
            try:
                await self._send({"Action": "Ping"})
            except (AmiError, TimeoutError):
                log.warning("AMI did not answer a ping; reconnecting")
                protocol.transport.close()
                return

    def _drop(self) -> None:
        pinger = getattr(self, "_pinger", None)
        if pinger is not None:
            pinger.cancel()
        if self._protocol is not None and not self._protocol.closed:
            self._protocol.transport.close()
        was_connected = self.connected.is_set()
        self._protocol = None
        self.connected.clear()
        self.disconnected.set()
        if was_connected:
            self._on_lost()

    # --- called by the protocol -------------------------------------------------------------------------------

    def frames_received(self, arrived_ns: int, frames: list[dict[str, str]]) -> None:
        self._on_frames((arrived_ns, frames))

    def connection_lost(self, protocol: _BridgeProtocol) -> None:
        if protocol is self._protocol or self._protocol is None:
            self._lost.set()

    def drop_connection(self) -> None:
        """Close the socket as if the network failed (the reconnect logic takes over)."""
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()

    # --- actions ----------------------------------------------------------------------------------------------

    async def _send(self, fields: dict[str, str], *, as_list: bool = False, logged_in: bool = False) -> Any:
        """The only way an action leaves the bridge: checked (check_action), then written by panoramisk."""
        action = Action(dict(fields), as_list=as_list)
        check_action(action)  # with the ActionID panoramisk added, as it will be written
        protocol = self._protocol
        if protocol is None or protocol.closed or (logged_in and not self.connected.is_set()):
            raise AmiUnreachable("the PBX is not connected")
        future = protocol.send(action, as_list=as_list)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=self._action_timeout)
        except TimeoutError:
            protocol.responses.pop(action.id, None)
            raise AmiUnreachable(f"the PBX did not answer {fields.get('Action')} in time") from None

    async def action(self, fields: dict[str, str]) -> dict[str, str]:
        """Send one action; its response headers (Response: Success or Error)."""
        return message_headers(await self._send(fields, logged_in=True))

    async def action_list(self, fields: dict[str, str]) -> list[dict[str, str]]:
        """Send an action answered by an event list (QueueStatus, CoreShowChannels …): all its messages."""
        messages = await self._send(fields, as_list=True, logged_in=True)
        if not isinstance(messages, list):
            messages = [messages]
        return [message_headers(m) for m in messages]
