"""A webhook receiver, as a customer's integration would run one: a real HTTP server on a local port that answers
each delivery as the test scripts it — fail (an HTTP status), time out (never answer in time) or succeed — and
keeps every request it got."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Received:
    delivery_id: str
    event_type: str
    signature: str
    body: bytes
    answered: str  # "ok", "fail:<status>", "timeout"
    at: float


class Receiver:
    def __init__(self) -> None:
        self.script: deque[str] = deque()  # what to do with the next requests; empty: "ok"
        self.otherwise = "ok"
        self.requests: list[Received] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.hold = asyncio.Event()  # "hold" requests wait for this
        self._released = asyncio.Event()  # "timeout" requests wait for this (set at stop)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/crm"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/crm", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._released.set()
        self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        action = self.script.popleft() if self.script else self.otherwise
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        received = Received(
            request.headers.get("X-CRM-Delivery", ""),
            request.headers.get("X-CRM-Event", ""),
            request.headers.get("X-CRM-Signature", ""),
            body,
            action,
            time.time(),
        )
        async with self._changed:
            self.requests.append(received)
            self._changed.notify_all()
        try:
            if action == "timeout":
                await self._released.wait()
                return web.Response(status=200, text="too late")
            if action == "hold":
                await self.hold.wait()
            if action.startswith("fail:"):
                return web.Response(status=int(action.split(":", 1)[1]), text="receiver says no")
            return web.Response(status=200, text="ok")
        finally:
            self.in_flight -= 1

    async def wait_for(self, count: int, within_s: float = 15.0) -> list[Received]:
        """Wait until `count` requests arrived (in all); the requests so far."""
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    async def wait_in_flight(self, count: int, within_s: float = 15.0) -> None:
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: self.in_flight >= count)
