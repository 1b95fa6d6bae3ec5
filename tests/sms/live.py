"""A live contact center for SMS tests: the real app served by hypercorn on a free port (its public URL is what
Twilio signs), a real SQLite database, the SMS outbox on the real twilio SDK pointed at the fake Twilio."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from sqlalchemy import select
from yarl import URL

from agent_desktop.app import create_asgi
from agent_desktop.runtime import Runtime, build_runtime, migrate_database
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.settings import load_settings
from crm_core.sms.models import SmsConversation, SmsMessage
from crm_core.sms.senders import SenderIn, save_sender
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, create_user
from sms_gateway.campaigns import CampaignDispatcher
from sms_gateway.outbox import SmsOutbox
from sms_gateway.twilio_provider import TwilioProvider
from tests.fakes.twilio_api import FakeTwilio
from tests.sqlite_template import migrated_sqlite

PASSWORD = "a long test password"
SENDER = "+15550000100"
ALICE = "+15551230001"
USERS = {
    "agent1001": (Role.AGENT, "1001"),
    "agent1002": (Role.AGENT, "1002"),
    "boss": (Role.SUPERVISOR, "9001"),
    "mkt": (Role.MARKETER, None),
    "root": (Role.ADMIN, None),
}


@dataclass
class SmsCenter:
    runtime: Runtime
    twilio: FakeTwilio
    outbox: SmsOutbox
    dispatcher: CampaignDispatcher
    base_url: str
    customers: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Task[Any] | None = None
    _clients: dict[str, tuple[aiohttp.ClientSession, str]] = field(default_factory=dict)

    async def client(self, username: str) -> tuple[aiohttp.ClientSession, str]:
        """A signed-in HTTP client kept for the center's life (signing in hashes a password: slow on purpose)."""
        if username not in self._clients:
            self._clients[username] = await self.signed_in(username)
        return self._clients[username]

    async def post_as(self, username: str, path: str, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        http, token = await self.client(username)
        async with http.post(
            f"{self.base_url}{path}", json=data, headers={"X-CSRF-Token": token, "Accept": "application/json"}
        ) as response:
            return response.status, await response.json()

    async def text_in(self, body: str, *, from_: str = ALICE, sid: str | None = None) -> int:
        return await self.twilio.text_in(f"{self.base_url}/sms/inbound", from_=from_, to=SENDER, body=body, sid=sid)

    async def signed_in(self, username: str) -> tuple[aiohttp.ClientSession, str]:
        """An HTTP client signed in as `username` and its CSRF token, as a browser gets them."""
        http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with http.get(f"{self.base_url}/login") as page:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert token is not None
        async with http.post(
            f"{self.base_url}/login",
            allow_redirects=False,
            data={"csrf_token": token.group(1), "username": username, "password": PASSWORD},
        ) as response:
            assert response.status == 302
        async with http.get(f"{self.base_url}/account") as page:
            meta = re.search(r'name="csrf-token" content="([^"]+)"', await page.text())
        assert meta is not None
        return http, meta.group(1)

    async def cookie(self, username: str) -> str:
        http, _token = await self.signed_in(username)
        try:
            jar = http.cookie_jar.filter_cookies(URL(self.base_url))
            return "; ".join(f"{k}={v.value}" for k, v in jar.items())
        finally:
            await http.close()

    async def agent_socket(self, username: str) -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=False)
        client.received = []  # type: ignore[attr-defined]
        client.arrived = asyncio.Event()  # type: ignore[attr-defined]

        async def catch_all(event: str, *args: Any) -> None:
            client.received.append((event, args[0] if args else None))  # type: ignore[attr-defined]
            client.arrived.set()  # type: ignore[attr-defined]

        client.on("*", catch_all, namespace="/agent")
        await client.connect(
            self.base_url,
            headers={"Cookie": await self.cookie(username)},
            namespaces=["/agent"],
            transports=["websocket"],
            wait_timeout=5,
        )
        return client

    async def conversation_of(self, number: str = ALICE) -> SmsConversation:
        async with self.runtime.sessions() as session:
            found = await session.scalar(
                select(SmsConversation).where(SmsConversation.number == number).order_by(SmsConversation.created_at)
            )
        assert found is not None
        return found

    async def messages(self, number: str = ALICE) -> list[SmsMessage]:
        async with self.runtime.sessions() as session:
            return list(
                await session.scalars(
                    select(SmsMessage)
                    .where((SmsMessage.to_number == number) | (SmsMessage.from_number == number))
                    .order_by(SmsMessage.created_at, SmsMessage.id)
                )
            )

    async def wait_message(self, predicate: Any, number: str = ALICE, within: float = 10) -> list[SmsMessage]:
        """Poll the database until the messages of `number` satisfy `predicate` (woken by the fake's requests)."""

        async def look() -> list[SmsMessage]:
            while True:
                found = await self.messages(number)
                if predicate(found):
                    return found
                await asyncio.sleep(0.02)

        return await asyncio.wait_for(look(), within)

    async def stop(self) -> None:
        for http, _token in self._clients.values():
            await http.close()
        self._stop.set()
        if self._server is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._server
        await self.dispatcher.stop()
        await self.outbox.stop()
        await self.outbox.provider.close()
        await self.twilio.stop()
        await self.runtime.close()


async def start_sms_center(
    tmp: Path, *, mps: float = 50.0, start_outbox: bool = True, extra_settings: dict[str, str] | None = None
) -> SmsCenter:
    twilio = FakeTwilio()
    await twilio.start()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = int(listener.getsockname()[1])
    base_url = f"http://127.0.0.1:{port}"
    settings = load_settings(
        {
            "CRM_DATABASE_URL": migrated_sqlite(tmp / "crm.db"),
            "CRM_DATA_DIR": str(tmp),
            "CRM_HTTP_PORT": str(port),
            "CRM_SECRET_KEY": "test-secret-key-of-reasonable-length",
            "CRM_PUBLIC_BASE_URL": base_url,
            "CRM_TWILIO_ACCOUNT_SID": twilio.account_sid,
            "CRM_TWILIO_AUTH_TOKEN": twilio.auth_token,
            "CRM_TWILIO_API_BASE": twilio.base_url,
            "CRM_SMS_SENDER": SENDER,
            "CRM_SMS_SENDER_MPS": str(mps),
            **(extra_settings or {}),
        }
    )
    runtime = await build_runtime(settings)
    await migrate_database(runtime)
    customers: dict[str, str] = {}
    users: dict[str, str] = {}
    async with runtime.unit_of_work() as session:
        for username, (role, extension) in USERS.items():
            user = await create_user(
                session=session,
                actor=SYSTEM,
                username=username,
                password=PASSWORD,
                role=role,
                extension=extension,
                queues=["support"],
                display_name=username.title(),
            )
            users[username] = user.id
        customer = await create_customer(
            session=session,
            actor=SYSTEM,
            region="US",
            data=CustomerIn(name="Alice Example", phones=[PhoneIn(number=ALICE)]),
        )
        customers["Alice Example"] = customer.id
        await save_sender(
            session=session,
            actor=SYSTEM,
            data=SenderIn(SENDER, "long_code", "US", label="Main", mps=mps, is_default=True, a2p_10dlc_registered=True),
        )
    provider = TwilioProvider(twilio.account_sid, twilio.auth_token, api_base=twilio.base_url)
    outbox = SmsOutbox(
        runtime.sessions,
        provider,
        bus=runtime.bus,
        public_base_url=base_url,
        default_mps=mps,
        every_s=0.05,
        backoff_s=0.05,
    )
    dispatcher = CampaignDispatcher(runtime.sessions, every_s=0.05, on_queued=outbox.wake.set)
    if start_outbox:
        await outbox.start()
        dispatcher.start()
    asgi, _sio = create_asgi(runtime, sms_outbox=outbox)
    center = SmsCenter(runtime, twilio, outbox, dispatcher, base_url, customers, users)
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1
    center._server = asyncio.create_task(hypercorn_serve(asgi, config, shutdown_trigger=center._stop.wait))
    return center
