"""The FastAGI server: Asterisk's `AGI(agi://host:4573/<flow>[/<start node>])` runs an IVR flow over TCP.

Built on panoramisk's FastAGI (its Application, Request and result parser). The connection handling is ours: it
reads the agi_* environment with a size and time limit and treats a closed socket as a hang-up, where panoramisk's
own handler would spin on a client that disconnects before sending its environment. A session whose Asterisk side
stops answering is closed after `answer_timeout_s`, and no more than `max_sessions` run at once: one more is closed
after its environment is read (Asterisk's AGI() then returns and the dialplan goes on).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panoramisk.fast_agi import Application, Request
from panoramisk.utils import parse_agi_result

from ivr.engine import CallerHungUp, CallerState, CrmContext, FlowRunner
from ivr.flow import Flow

log = logging.getLogger(__name__)

ENV_LIMIT = 16 * 1024
ENV_TIMEOUT_S = 5.0
REFUSED_ENV_TIMEOUT_S = 1.0  # a refused connection: how long its environment may take before it is closed anyway
ANSWER_TIMEOUT_S = 30.0  # CRM_AGI_ANSWER_TIMEOUT_S
MAX_SESSIONS = 4000  # CRM_AGI_MAX_SESSIONS


def quote(value: str) -> str:
    """An AGI argument in double quotes (the value of SET VARIABLE may hold spaces and quotes)."""
    cleaned = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")
    return f'"{cleaned}"'


@dataclass
class AgiStats:
    sessions: int = 0
    open_sessions: int = 0
    refused: int = 0  # connections over max_sessions
    went_quiet: int = 0  # sessions closed because Asterisk stopped answering
    # the server's own time per step: from Asterisk's answer to our next command (the flow's work in between)
    step_seconds: list[float] = field(default_factory=list)
    keep_step_times: bool = False


class AgiLine:
    """The CallerLine of one FastAGI session."""

    def __init__(
        self,
        request: Request,
        recordings: Path,
        stats: AgiStats | None = None,
        *,
        answer_timeout_s: float | None = ANSWER_TIMEOUT_S,
    ) -> None:
        self.request = request
        self._answer_timeout_s = answer_timeout_s
        self._quiet = False
        self.headers: dict[str, str] = dict(request.headers)
        self.caller_number = self.headers.get("agi_callerid", "")
        if self.caller_number in ("unknown", "anonymous"):
            self.caller_number = ""
        self.uniqueid = self.headers.get("agi_uniqueid", "")
        self._recordings = recordings
        self._stats = stats
        self._since = time.perf_counter()  # the environment arrived: the first step starts now

    async def send(self, command: str) -> dict[str, Any]:
        if self._stats is not None and self._stats.keep_step_times:
            self._stats.step_seconds.append(time.perf_counter() - self._since)
        if self._quiet:  # the other side stopped answering: wait for it no more (a flow's last HANGUP)
            raise CallerHungUp
        request = self.request
        request.writer.write(command.encode(request.encoding) + b"\n")
        try:
            async with asyncio.timeout(self._answer_timeout_s):
                await request.writer.drain()
                line = await request.reader.readline()
                while line.startswith(b"100 "):  # "100 result=0 Trying..." comes before the real answer
                    line = await request.reader.readline()
                if line.startswith(b"520-"):  # a usage error spans lines up to "520 End of proper usage."
                    while line and not line.startswith(b"520 "):
                        line = await request.reader.readline()
        except TimeoutError:
            self._quiet = True
            if self._stats is not None:
                self._stats.went_quiet += 1
            log.warning(
                "AGI session %s (%s) gave no answer to %s in %s s; closing it",
                self.uniqueid or "?",
                self.headers.get("agi_channel", "unknown channel"),
                " ".join(command.split(" ")[:2]),
                self._answer_timeout_s,
            )
            raise CallerHungUp from None
        except (ConnectionError, asyncio.IncompleteReadError):
            raise CallerHungUp from None
        if not line:
            raise CallerHungUp
        result: dict[str, Any] = parse_agi_result(line.decode(request.encoding, "replace").rstrip("\r\n"))
        self._since = time.perf_counter()
        if result.get("error") in ("AGIResultHangup", "AGIAppError"):
            raise CallerHungUp
        if result.get("error"):
            log.warning("AGI command %r failed: %s", command.split(" ")[0:2], result.get("msg") or result["error"])
        return result

    @staticmethod
    def _value(result: dict[str, Any]) -> tuple[str, str]:
        value = result.get("result") or ("", "")
        return str(value[0]), str(value[1])

    async def play(self, prompt: str) -> None:
        await self.send(f'STREAM FILE {prompt} ""')

    async def get_digits(self, prompt: str, timeout_s: int, max_digits: int) -> str:
        digits, _ = self._value(await self.send(f"GET DATA {prompt} {timeout_s * 1000} {max_digits}"))
        return digits if digits.isdigit() or set(digits) <= set("0123456789*#") else ""

    async def say_number(self, number: int) -> None:
        await self.send(f'SAY NUMBER {number} ""')

    async def set_variable(self, name: str, value: str) -> None:
        await self.send(f"SET VARIABLE {name} {quote(value)}")

    async def get_variable(self, name: str) -> str | None:
        code, value = self._value(await self.send(f"GET VARIABLE {name}"))
        return value if code == "1" else None

    async def exec_app(self, application: str, arguments: str) -> None:
        await self.send(f"EXEC {application} {quote(arguments)}")

    async def record(self, seconds: int) -> str | None:
        safe_id = "".join(c if c.isalnum() else "-" for c in self.uniqueid) or "call"
        path = self._recordings / f"ivr-{safe_id}-{time.monotonic_ns()}"
        await self.send(f'RECORD FILE {path} wav "#" {seconds * 1000} s=2')
        wav = Path(f"{path}.wav")
        return str(wav) if await asyncio.to_thread(wav.exists) else None

    async def hangup(self) -> None:
        try:
            await self.send("HANGUP")
        except CallerHungUp:
            pass


class FastAgiServer(Application):  # type: ignore[misc]
    """Routes `<flow>` and `<flow>/<node>` to flows; `ivr` is the default flow."""

    def __init__(
        self,
        flows: dict[str, Flow],
        crm: CrmContext,
        *,
        default_flow: str,
        recordings: Path,
        on_finished: Callable[[dict[str, str], CallerState], None] | None = None,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        super().__init__(loop=asyncio.get_running_loop())
        self.flows = flows
        self.crm = crm
        self.default_flow = default_flow
        self.recordings = recordings
        self.on_finished = on_finished
        self.answer_timeout_s = answer_timeout_s
        self.max_sessions = max_sessions
        self.stats = AgiStats()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self.recordings.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_server(self.handler, host, port, limit=ENV_LIMIT)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def route(self, script: str) -> tuple[Flow, str] | None:
        name, _, start = script.strip("/").partition("/")
        flow = self.flows.get(name) or (self.flows.get(self.default_flow) if name == "ivr" else None)
        if flow is None:
            return None
        if start and start not in flow.nodes:
            return None
        return flow, start or flow.start

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats = self.stats
        if stats.open_sessions >= self.max_sessions:
            await self._refuse(reader, writer)
            return
        stats.open_sessions += 1
        try:
            await self._session(reader, writer)
        finally:
            stats.open_sessions -= 1

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Over the limit: read the environment (so the socket closes with a FIN, not a reset) and close."""
        self.stats.refused += 1
        raw = b""
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\n\n"), REFUSED_ENV_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        text = raw.decode(self.default_encoding, "replace")
        found = dict(line.split(": ", 1) for line in text.split("\n") if ": " in line)
        log.warning(
            "refused AGI session %s (%s): %d sessions are open, the most CRM_AGI_MAX_SESSIONS allows",
            found.get("agi_uniqueid", "?"),
            found.get("agi_channel", "unknown channel"),
            self.stats.open_sessions,
        )
        writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\n\n"), ENV_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            log.info("AGI client left before sending its environment")
            writer.close()
            return
        headers = dict(
            line.split(": ", 1) for line in raw.decode(self.default_encoding, "replace").split("\n") if ": " in line
        )
        request = Request(app=self, headers=headers, reader=reader, writer=writer, encoding=self.default_encoding)
        self.stats.sessions += 1
        routed = self.route(headers.get("agi_network_script", ""))
        try:
            if routed is None:
                log.error("no IVR flow for AGI script %r", headers.get("agi_network_script"))
                line = AgiLine(request, self.recordings, answer_timeout_s=self.answer_timeout_s)
                await line.play("an-error-has-occurred")
                await line.hangup()
                return
            flow, start = routed
            runner = FlowRunner(flow, self.crm)
            line = AgiLine(request, self.recordings, self.stats, answer_timeout_s=self.answer_timeout_s)
            state = await runner.run(line, start=start)
            if self.on_finished is not None:
                self.on_finished(headers, state)
        except CallerHungUp:
            pass
        except Exception:
            log.exception("IVR flow failed for %s", headers.get("agi_uniqueid"))
        finally:
            writer.close()
