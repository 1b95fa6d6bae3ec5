"""Call controls across processes: a web-only worker's commands travel over Redis to the `crm cti` process.

`RemotePbx` is the PbxAdapter of a web-only worker: each command is published on a Redis channel with a reply
channel of its own and awaited with a timeout. `PbxCommandServer` runs in the CTI process, executes the commands
on the real adapter and publishes each result or error back. Only the PbxAdapter's command methods travel, and
the requests to re-send the live state to a browser that just (re)connected to a web-only worker: the CTI process
holds that state and sends it to the browser's sid through the Socket.IO Redis manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

import redis.asyncio as aioredis

from cti_bridge.adapter import CommandError, CommandErrorCode, CommandResult, PbxAdapter, PbxSnapshot, SpyMode

log = logging.getLogger(__name__)

COMMANDS = {
    "dial",
    "hangup",
    "blind_transfer",
    "attended_transfer",
    "hold",
    "resume",
    "queue_login",
    "queue_logout",
    "pause",
    "unpause",
    "spy",
}


RESENDS = {"resend_to_agent", "resend_to_supervisor"}


class Resender(Protocol):
    async def resend_to_agent(self, sid: str, agent: str) -> None: ...
    async def resend_to_supervisor(self, sid: str) -> None: ...


def command_channel(prefix: str) -> str:
    return f"{prefix}:pbx-commands"


class _Listener:
    """One Redis pub/sub channel read by one task; `handle` gets each message's data."""

    def __init__(self, redis_url: str, channel: str) -> None:
        self._redis = aioredis.from_url(redis_url)
        self._channel = channel
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read(), name=f"redis:{self._channel}")
        await asyncio.wait_for(self._subscribed.wait(), 10)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        await self._redis.aclose()

    async def _read(self) -> None:
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self._channel)
        self._subscribed.set()
        try:
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    self.handle(message["data"])
        finally:
            await pubsub.aclose()

    def handle(self, data: bytes) -> None:
        raise NotImplementedError


class RemotePbx(_Listener):
    """A PbxAdapter whose commands run in the CTI process; it keeps no live state (snapshot says so)."""

    def __init__(self, redis_url: str, prefix: str, *, timeout_s: float = 5.0) -> None:
        self._replies = f"{prefix}:pbx-replies:{uuid.uuid4().hex}"
        super().__init__(redis_url, self._replies)
        self._prefix = prefix
        self._timeout = timeout_s
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def handle(self, data: bytes) -> None:
        try:
            reply = json.loads(data)
        except (ValueError, TypeError):
            return
        future = self._waiting.pop(str(reply.get("id")), None)
        if future is not None and not future.done():
            future.set_result(reply)

    def snapshot(self) -> PbxSnapshot:
        return PbxSnapshot(connected=False, taken_at=datetime.now(UTC))

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> CommandResult:
        request_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        request = {"id": request_id, "reply_to": self._replies, "method": method, "args": args, "kwargs": kwargs}
        try:
            receivers = await self._redis.publish(command_channel(self._prefix), json.dumps(request))
            if not receivers:
                raise CommandError(CommandErrorCode.PBX_UNREACHABLE, "No CTI process is running (crm cti).")
            reply = await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            raise CommandError(CommandErrorCode.PBX_UNREACHABLE, "The CTI process did not answer in time.") from None
        finally:
            self._waiting.pop(request_id, None)
        if reply.get("ok"):
            return CommandResult(command=str(reply.get("command", method)), reference=reply.get("reference"))
        try:
            code = CommandErrorCode(reply.get("code"))
        except ValueError:
            code = CommandErrorCode.REJECTED
        raise CommandError(code, str(reply.get("detail") or "The command failed."))

    async def forward_resend(self, method: str, *args: str) -> bool:
        """Ask the CTI process to re-send the live state to a browser here; False when no CTI process listens."""
        request = {"id": uuid.uuid4().hex, "reply_to": self._replies, "method": method, "args": args, "kwargs": {}}
        return bool(await self._redis.publish(command_channel(self._prefix), json.dumps(request)))

    async def dial(self, agent: str, number: str, *, caller_id: str | None = None) -> CommandResult:
        return await self._call("dial", agent, number, caller_id=caller_id)

    async def hangup(self, linkedid: str, *, agent: str | None = None) -> CommandResult:
        return await self._call("hangup", linkedid, agent=agent)

    async def blind_transfer(self, linkedid: str, agent: str, target: str) -> CommandResult:
        return await self._call("blind_transfer", linkedid, agent, target)

    async def attended_transfer(self, linkedid: str, agent: str, target: str) -> CommandResult:
        return await self._call("attended_transfer", linkedid, agent, target)

    async def hold(self, linkedid: str, agent: str) -> CommandResult:
        return await self._call("hold", linkedid, agent)

    async def resume(self, linkedid: str, agent: str) -> CommandResult:
        return await self._call("resume", linkedid, agent)

    async def queue_login(self, agent: str, queue: str) -> CommandResult:
        return await self._call("queue_login", agent, queue)

    async def queue_logout(self, agent: str, queue: str) -> CommandResult:
        return await self._call("queue_logout", agent, queue)

    async def pause(self, agent: str, reason: str, *, queue: str | None = None) -> CommandResult:
        return await self._call("pause", agent, reason, queue=queue)

    async def unpause(self, agent: str, *, queue: str | None = None) -> CommandResult:
        return await self._call("unpause", agent, queue=queue)

    async def spy(self, supervisor_extension: str, agent: str, mode: SpyMode) -> CommandResult:
        return await self._call("spy", supervisor_extension, agent, mode.value)


class PbxCommandServer(_Listener):
    """In the CTI process: runs the commands web workers send, on the real adapter, and answers each."""

    def __init__(self, redis_url: str, prefix: str, pbx: PbxAdapter, *, resender: Resender | None = None) -> None:
        super().__init__(redis_url, command_channel(prefix))
        self._pbx = pbx
        self._resender = resender
        self._running: set[asyncio.Task[None]] = set()

    def handle(self, data: bytes) -> None:
        task = asyncio.create_task(self._run(data))  # a slow command must not hold the others
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def stop(self) -> None:
        for task in list(self._running):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await super().stop()

    async def _run(self, raw: bytes | str) -> None:
        try:
            request = json.loads(raw)
            method, reply_to = str(request["method"]), str(request["reply_to"])
            args, kwargs = list(request.get("args", [])), dict(request.get("kwargs", {}))
        except (ValueError, TypeError, KeyError):
            log.warning("dropped a malformed PBX command")
            return
        reply: dict[str, Any] = {"id": request.get("id")}
        if method in RESENDS:  # nobody waits for an answer: the state itself is the answer
            if not all(isinstance(arg, str) for arg in args):
                log.warning("dropped a malformed re-send request (%s)", method)
            elif self._resender is not None:
                try:
                    await getattr(self._resender, method)(*args)
                except Exception:
                    log.exception("could not re-send the live state (%s)", method)
            return
        if method not in COMMANDS:
            reply.update(ok=False, code=CommandErrorCode.INVALID.value, detail=f"{method} is not a PBX command.")
        else:
            if method == "spy" and len(args) == 3:
                args[2] = SpyMode(args[2])
            try:
                result = await getattr(self._pbx, method)(*args, **kwargs)
            except CommandError as exc:
                reply.update(ok=False, code=exc.code.value, detail=exc.detail)
            except Exception:
                log.exception("PBX command %s failed", method)
                reply.update(ok=False, code=CommandErrorCode.REJECTED.value, detail="The command failed.")
            else:
                reply.update(ok=True, command=result.command, reference=result.reference)
        await self._redis.publish(reply_to, json.dumps(reply))
