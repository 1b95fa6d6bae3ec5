"""The PBX's answer to a pushed event waits until the browsers' connections have taken what the event sent them
(`Notifier.delivered`): a screen pop no longer queues behind the HTTP answer to the gateway. And a browser that
stopped reading holds that answer back only for a bounded moment, never for good."""

# ruff: noqa: F811  (the fixtures `center` and `gateway` come from test_generic_cti, named as its tests name them)
from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from agent_desktop.rooms import AGENT_NAMESPACE, agent_room
from cti_bridge.generic import linkedid_for
from tests.cti.test_cti_edge import form, new_call
from tests.cti.test_generic_cti import PBX, TOKEN, center, gateway  # noqa: F401  (fixtures)
from tests.desktop.live import LiveCenter, wait_event

PATH = f"/api/cti/{PBX}/{TOKEN}"


def browsers_of(center: LiveCenter, extension: str) -> list[Any]:
    """The Engine.IO sessions of an agent's browsers, as the server holds them."""
    sio = center.asgi.engineio_server
    return [
        sio.eio.sockets[eio_sid]
        for _sid, eio_sid in sio.manager.get_participants(AGENT_NAMESPACE, agent_room(extension))
    ]


def asgi_scope(kind: str, path: str, headers: list[tuple[bytes, bytes]], query: bytes = b"") -> dict[str, Any]:
    """A request as hypercorn hands it to the app (`kind` "http" for a POST, or "websocket")."""
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http" if kind == "http" else "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    if kind == "http":
        scope["method"] = "POST"
    else:
        scope["subprotocols"] = []
    return scope


async def test_the_pbx_is_answered_once_the_agents_browser_has_taken_the_pop(center: LiveCenter) -> None:
    emma = await center.socket("agent1001", "/agent")
    try:
        (browser,) = browsers_of(center, "1001")
        assert browser.upgraded  # a WebSocket, as browsers have
        await browser.queue.join()  # what the connection itself sent is out
        # the request as hypercorn hands it to the app; at the answer's first byte, the pop's frame must have left
        # the browser's queue (before, it was still there: the answer was written in the same turn as the ring)
        body = form(new_call("taken-1"))
        scope = asgi_scope(
            "http",
            PATH,
            [(b"content-type", b"application/x-www-form-urlencoded"), (b"content-length", str(len(body)).encode())],
        )
        sent: list[dict[str, Any]] = []
        queued_at_answer: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                queued_at_answer.append(browser.queue.qsize())
            sent.append(message)

        await center.asgi(scope, receive, send)
        assert sent[0]["status"] == 200 and json.loads(sent[1]["body"]) == {}
        assert queued_at_answer == [0]
        pop = await wait_event(emma, "pop", lambda p: p["linkedid"] == linkedid_for(PBX, "taken-1"))
        assert pop["customer"]["name"] == "Erika Mustermann"
    finally:
        await emma.disconnect()


class StoppedReading:
    """A browser on a WebSocket, spoken to as the ASGI server speaks: it joins /agent with its session cookie, then
    stops reading, so that every later frame to it waits (as a full socket buffer makes a server wait)."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.frames: list[str] = []
        self.joined = asyncio.Event()
        self.held = asyncio.Event()  # a frame is waiting to be written
        self.gone = asyncio.Event()  # the browser went away: what was held is dropped, and the session ends

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] != "websocket.send":
            return
        if self.joined.is_set():
            self.held.set()
            await self.gone.wait()  # not read until the browser goes away
            return
        text = message.get("text") or ""
        self.frames.append(text)
        if text.startswith("0"):  # Engine.IO's open: now the namespace
            await self.incoming.put({"type": "websocket.receive", "text": f"40{AGENT_NAMESPACE},"})
        elif text.startswith(f"40{AGENT_NAMESPACE},"):
            self.joined.set()


async def test_a_browser_that_stopped_reading_holds_the_pbx_answer_only_for_a_moment(center: LiveCenter) -> None:
    cookie = await center.cookie("agent1001")
    browser = StoppedReading()
    scope = asgi_scope(
        "websocket",
        "/socket.io/",
        [(b"connection", b"Upgrade"), (b"upgrade", b"websocket"), (b"cookie", cookie.encode())],
        query=b"EIO=4&transport=websocket",
    )
    await browser.incoming.put({"type": "websocket.connect"})
    session = asyncio.create_task(center.asgi(scope, browser.receive, browser.send))
    try:
        await asyncio.wait_for(browser.joined.wait(), 10)
        (held,) = browsers_of(center, "1001")
        assert held.upgraded
        url = center.base_url + PATH
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def push(call_id: str) -> tuple[int, Any]:
                async with http.post(
                    url, data=form(new_call(call_id)), headers={"Content-Type": "application/x-www-form-urlencoded"}
                ) as response:
                    return response.status, await response.json()

            # the first pop is taken from the queue, and its write never ends
            assert await push("held-1") == (200, {})
            await asyncio.wait_for(browser.held.wait(), 10)
            # the second waits behind it, for good: the PBX is answered all the same
            assert await push("held-2") == (200, {})
        assert held.queue.qsize() >= 1
        # and nothing is left waiting on that queue
        assert not [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "Queue.join"]  # type: ignore[union-attr]
        assert not any('"pop"' in frame for frame in browser.frames)
        assert {linkedid_for(PBX, "held-1"), linkedid_for(PBX, "held-2")} <= set(
            center.pbxes.generic[PBX].tracker.calls  # type: ignore[union-attr]
        )
    finally:
        browser.gone.set()
        await browser.incoming.put({"type": "websocket.disconnect", "code": 1001})
        await asyncio.wait_for(session, 10)
