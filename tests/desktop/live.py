"""A live contact center for end-to-end tests: the real app served by hypercorn on a free port, a real SQLite
database, the CTI bridge logged in to a demo PBX over TCP, and helpers to sign in over HTTP and Socket.IO."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from yarl import URL

from agent_desktop.app import create_asgi
from agent_desktop.runtime import Runtime, build_runtime, migrate_database
from agent_desktop.telephony import generic_adapters
from crm_core.calls.models import Disposition
from crm_core.calls.writer import CallLogWriter
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.settings import load_settings
from crm_core.tickets.service import create_ticket
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, create_user
from cti_bridge.ami import AmiEndpoint
from cti_bridge.asterisk import AsteriskAdapter
from cti_bridge.demo_pbx import DemoPbx
from cti_bridge.generic import PbxSet
from tests.sqlite_template import migrated_sqlite

PASSWORD = "a long test password"
XSS_NAME = "<img src=x onerror=alert(1)>"
USERS = {
    "agent1001": (Role.AGENT, "1001", ["support"]),
    "agent1002": (Role.AGENT, "1002", ["support"]),
    "agent2001": (Role.AGENT, "2001", ["sales"]),
    "boss": (Role.SUPERVISOR, "9001", []),
    "mkt": (Role.MARKETER, None, []),
    "root": (Role.ADMIN, None, []),
}


@dataclass
class LiveCenter:
    runtime: Runtime
    pbx: DemoPbx
    bridge: AsteriskAdapter
    base_url: str
    customers: dict[str, str] = field(default_factory=dict)
    writer: CallLogWriter | None = None
    listener: socket.socket | None = None
    pbxes: PbxSet | None = None  # Asterisk and the generic CTI PBXes, when the center has any
    asgi: Any = None  # what hypercorn serves: Socket.IO, in front of the generic CTI fast path, in front of Quart
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def cookie(self, username: str) -> str:
        """Sign in over HTTP like a browser (CSRF token from the form) and return the session cookie header."""
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(f"{self.base_url}/login") as page:
                token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
                assert token is not None
            async with http.post(
                f"{self.base_url}/login",
                data={"csrf_token": token.group(1), "username": username, "password": PASSWORD},
                allow_redirects=False,
            ) as response:
                assert response.status == 302, await response.text()
            jar = http.cookie_jar.filter_cookies(URL(self.base_url))
            return "; ".join(f"{k}={v.value}" for k, v in jar.items())

    async def socket(self, username: str | None, namespace: str) -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=False)
        client.received = []  # type: ignore[attr-defined]
        client.arrived = asyncio.Event()  # type: ignore[attr-defined]

        async def catch_all(event: str, *args: Any) -> None:
            client.received.append((event, args[0] if args else None))  # type: ignore[attr-defined]
            client.arrived.set()  # type: ignore[attr-defined]

        client.on("*", catch_all, namespace=namespace)
        headers = {"Cookie": await self.cookie(username)} if username else {}
        await client.connect(
            self.base_url, headers=headers, namespaces=[namespace], transports=["websocket"], wait_timeout=5
        )
        return client

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pbxes is not None:
            await self.pbxes.stop()
        await self.bridge.stop()
        await self.pbx.stop()
        if self.writer is not None:
            await self.writer.stop()
        await self.runtime.close()


async def wait_event(
    client: socketio.AsyncClient, name: str, predicate: Any = lambda _d: True, within: float = 10
) -> Any:
    async def look() -> Any:
        while True:
            for event, data in client.received:  # type: ignore[attr-defined]
                if event == name and predicate(data):
                    return data
            client.arrived.clear()  # type: ignore[attr-defined]
            await client.arrived.wait()  # type: ignore[attr-defined]

    return await asyncio.wait_for(look(), within)


async def start_center(
    tmp: Path,
    *,
    time_scale: float = 0.05,
    wrapup_seconds: int = 30,
    redis_url: str | None = None,
    pbx_options: dict[str, Any] | None = None,
    generic_pbxes: list[dict[str, Any]] | None = None,
) -> LiveCenter:
    # a socket listening before the server starts: clients connecting early just wait in its backlog
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = int(listener.getsockname()[1])
    env = {
        "CRM_DATABASE_URL": migrated_sqlite(tmp / "crm.db"),
        "CRM_DATA_DIR": str(tmp),
        "CRM_HTTP_PORT": str(port),
        "CRM_WRAPUP_SECONDS": str(wrapup_seconds),
        "CRM_SECRET_KEY": "test-secret-key-of-reasonable-length",
    }
    if redis_url:
        env["CRM_REDIS_URL"] = redis_url
    if generic_pbxes:
        env["CRM_GENERIC_PBXES"] = json.dumps(generic_pbxes)
    settings = load_settings(env)
    runtime = await build_runtime(settings)
    await migrate_database(runtime)
    center_customers: dict[str, str] = {}
    async with runtime.unit_of_work() as session:
        for username, (role, extension, queues) in USERS.items():
            await create_user(
                session=session,
                actor=SYSTEM,
                username=username,
                password=PASSWORD,
                role=role,
                extension=extension,
                queues=queues,
                display_name=username.title(),
            )
        for code, label in (("resolved", "Resolved"), ("sale", "Sale"), ("callback", "Call back")):
            await session.merge(Disposition(code=code, label=label))
        for name, number, vip in (
            ("Alice Example", "+15551230001", "gold"),
            (XSS_NAME, "+15551230066", None),
            ("Bob Example", "+15551230002", None),
        ):
            customer = await create_customer(
                session=session,
                actor=SYSTEM,
                region="US",
                data=CustomerIn(name=name, phones=[PhoneIn(number=number)], vip_tier=vip),
            )
            center_customers[name] = customer.id
        await create_ticket(
            session=session,
            actor=SYSTEM,
            subject="Router keeps rebooting",
            customer_id=center_customers["Alice Example"],
        )
    pbx = DemoPbx(secret="demo-secret", time_scale=time_scale, seed=3, **(pbx_options or {}))
    await pbx.start()
    bridge = AsteriskAdapter(
        AmiEndpoint("127.0.0.1", pbx.port, "crm", "demo-secret"),
        runtime.bus,
        wrapup_seconds=wrapup_seconds,
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    writer = CallLogWriter(runtime.sessions, region="US")
    writer.attach(runtime.bus)
    pbxes = PbxSet(bridge, generic_adapters(runtime)) if generic_pbxes else None
    asgi, _sio = create_asgi(runtime, pbx=pbxes or bridge)
    center = LiveCenter(runtime, pbx, bridge, f"http://127.0.0.1:{port}", center_customers, writer=writer)
    center.pbxes = pbxes
    center.asgi = asgi
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]  # hypercorn owns and closes it
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1
    center._tasks.append(asyncio.create_task(hypercorn_serve(asgi, config, shutdown_trigger=center._stop.wait)))
    await bridge.start()
    await asyncio.wait_for(bridge.resynced.wait(), 10)
    return center
