"""Sessions end when they should: sign-out, deactivation, a role change or a new password end every page and live
socket of that user at once, and the old cookie replayed opens nothing. Sign-ins are throttled over HTTP, the admin
lifts a lock, and the default Socket.IO namespace lets no one in."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
import socketio
from sqlalchemy import event, select
from yarl import URL

from agent_desktop.auth import SignedInUsers
from crm_core.audit.models import AuditEntry
from crm_core.db import utcnow
from crm_core.users.logins import ACCOUNT_POLICY, begin_sign_in
from crm_core.users.models import LoginThrottle, Role, ThrottleScope, User
from crm_core.users.service import Actor, change_role, deactivate_user
from tests.desktop.live import PASSWORD, LiveCenter


@dataclass
class Browser:
    """A signed-in browser: its cookie jar, the CSRF token of its pages, and the cookie it holds now."""

    http: aiohttp.ClientSession
    token: str
    base_url: str

    @property
    def cookie(self) -> str:
        jar = self.http.cookie_jar.filter_cookies(URL(self.base_url))
        return "; ".join(f"{k}={v.value}" for k, v in jar.items())


async def sign_in(center: LiveCenter, username: str, password: str = PASSWORD) -> Browser:
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(f"{center.base_url}/login") as page:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert token is not None
    async with http.post(
        f"{center.base_url}/login",
        data={"csrf_token": token.group(1), "username": username, "password": password},
        allow_redirects=False,
    ) as response:
        assert response.status == 302, await response.text()
    async with http.get(f"{center.base_url}/account") as page:  # a page: the session's CSRF token
        meta = re.search(r'name="csrf-token" content="([^"]+)"', await page.text())
    assert meta is not None
    return Browser(http, meta.group(1), center.base_url)


@pytest.fixture
async def browsers() -> AsyncIterator[list[Browser]]:
    opened: list[Browser] = []
    yield opened
    for browser in opened:
        await browser.http.close()


async def connect(center: LiveCenter, cookie: str, namespace: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    client.gone = asyncio.Event()  # type: ignore[attr-defined]

    def on_disconnect(*_reason: Any) -> None:
        client.gone.set()  # type: ignore[attr-defined]

    client.on("disconnect", on_disconnect, namespace=namespace)
    await client.connect(
        center.base_url, headers={"Cookie": cookie}, namespaces=[namespace], transports=["websocket"], wait_timeout=5
    )
    return client


async def refused(center: LiveCenter, cookie: str, namespace: str) -> bool:
    try:
        client = await connect(center, cookie, namespace)
    except socketio.exceptions.ConnectionError:
        return True
    await client.disconnect()
    return False


async def replay(center: LiveCenter, cookie: str, token: str) -> dict[str, Any]:
    """What an old cookie still opens: the desktop page, a note on a customer (the API), the account page."""
    outcome: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:  # no jar: exactly the cookie given, as an attacker replays it
        async with http.get(
            f"{center.base_url}/desktop", headers={"Cookie": cookie}, allow_redirects=False
        ) as response:
            outcome["desktop"] = (response.status, response.headers.get("Location", ""))
        async with http.post(
            f"{center.base_url}/api/customers/{center.customers['Bob Example']}/notes",
            headers={"Cookie": cookie, "X-CSRF-Token": token},
            json={"body": "written with an old cookie"},
        ) as response:
            outcome["note"] = response.status
    return outcome


OPEN = {"desktop": (200, ""), "note": 201}
SHUT = {"desktop": (302, "/login?next=/desktop"), "note": 401}


async def user_id(center: LiveCenter, username: str) -> str:
    async with center.runtime.sessions() as db:
        found = await db.scalar(select(User.id).where(User.username == username))
    assert found is not None
    return str(found)


async def admin_actor(center: LiveCenter) -> Actor:
    return Actor(user_id=await user_id(center, "root"), role=Role.ADMIN)


async def test_signing_out_ends_every_session_of_the_user(center: LiveCenter, browsers: list[Browser]) -> None:
    first = await sign_in(center, "agent1001")
    second = await sign_in(center, "agent1001")  # the same agent in another browser
    browsers += [first, second]
    old = first.cookie
    assert await replay(center, old, first.token) == OPEN
    sockets = [await connect(center, old, "/agent"), await connect(center, second.cookie, "/agent")]
    async with first.http.post(
        f"{center.base_url}/logout", data={"csrf_token": first.token}, allow_redirects=False
    ) as response:
        assert response.status == 302
    for client in sockets:  # both browsers' live sockets are closed by the server
        await asyncio.wait_for(client.gone.wait(), 5)  # type: ignore[attr-defined]
    assert await replay(center, old, first.token) == SHUT
    assert await replay(center, second.cookie, second.token) == SHUT
    assert await refused(center, old, "/agent")
    audit = await logouts(center, "agent1001")
    assert audit == 1
    again = await sign_in(center, "agent1001")  # signing in again works as ever
    browsers.append(again)
    assert await replay(center, again.cookie, again.token) == OPEN


async def logouts(center: LiveCenter, username: str) -> int:
    uid = await user_id(center, username)
    async with center.runtime.sessions() as db:
        return len(
            list(await db.scalars(select(AuditEntry).where(AuditEntry.entity_id == uid, AuditEntry.action == "logout")))
        )


async def test_deactivation_ends_pages_and_sockets(center: LiveCenter, browsers: list[Browser]) -> None:
    agent, boss = await sign_in(center, "agent1001"), await sign_in(center, "boss")
    browsers += [agent, boss]
    agent_socket = await connect(center, agent.cookie, "/agent")
    boss_sockets = [await connect(center, boss.cookie, "/agent"), await connect(center, boss.cookie, "/supervisor")]
    root = await admin_actor(center)
    async with center.runtime.unit_of_work() as db:
        await deactivate_user(session=db, actor=root, user_id=await user_id(center, "boss"))
    for client in boss_sockets:  # in both namespaces
        await asyncio.wait_for(client.gone.wait(), 5)  # type: ignore[attr-defined]
    assert await refused(center, boss.cookie, "/supervisor")
    assert await refused(center, boss.cookie, "/agent")
    assert await replay(center, boss.cookie, boss.token) == SHUT
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # nor sign in again
        async with http.get(f"{center.base_url}/login") as page:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert token is not None
        async with http.post(
            f"{center.base_url}/login",
            data={"csrf_token": token.group(1), "username": "boss", "password": PASSWORD},
            allow_redirects=False,
        ) as response:
            assert response.status == 401
    # nobody else was touched
    assert agent_socket.connected and not agent_socket.gone.is_set()  # type: ignore[attr-defined]
    assert await replay(center, agent.cookie, agent.token) == OPEN
    await agent_socket.disconnect()


async def test_a_role_change_ends_the_sessions_of_the_old_role(center: LiveCenter, browsers: list[Browser]) -> None:
    agent = await sign_in(center, "agent1001")
    browsers.append(agent)
    live = await connect(center, agent.cookie, "/agent")
    root = await admin_actor(center)
    async with center.runtime.unit_of_work() as db:
        await change_role(
            session=db, actor=root, user_id=await user_id(center, "agent1001"), role=Role.MARKETER, extension=None
        )
    await asyncio.wait_for(live.gone.wait(), 5)  # type: ignore[attr-defined]
    assert await refused(center, agent.cookie, "/agent")
    assert await replay(center, agent.cookie, agent.token) == SHUT
    marketer = await sign_in(center, "agent1001")  # signed in again: what the user is now, no more
    browsers.append(marketer)
    assert await replay(center, marketer.cookie, marketer.token) == {"desktop": (403, ""), "note": 403}
    assert await refused(center, marketer.cookie, "/agent")


async def test_a_new_password_keeps_this_browser_and_ends_the_others(
    center: LiveCenter, browsers: list[Browser]
) -> None:
    here, elsewhere = await sign_in(center, "agent1002"), await sign_in(center, "agent1002")
    browsers += [here, elsewhere]
    other_socket = await connect(center, elsewhere.cookie, "/agent")
    new = "another long password"
    form = {"csrf_token": here.token, "current": "not my password", "password": new, "again": new}
    async with here.http.post(f"{center.base_url}/password", data=form, allow_redirects=False) as response:
        assert response.status == 400
        assert "Your current password is wrong." in await response.text()
    assert await account_failures(center, "agent1002") == 1  # counted like a failed sign-in
    async with here.http.post(
        f"{center.base_url}/password", data=form | {"current": PASSWORD}, allow_redirects=False
    ) as response:
        assert response.status == 302
    await asyncio.wait_for(other_socket.gone.wait(), 5)  # type: ignore[attr-defined]
    assert await replay(center, elsewhere.cookie, elsewhere.token) == SHUT
    assert await replay(center, here.cookie, here.token) == OPEN  # this browser got a cookie of the new version
    assert not await refused(center, here.cookie, "/agent")
    assert await account_failures(center, "agent1002") == 0  # the right current password forgot the failure
    browsers.append(await sign_in(center, "agent1002", new))


async def account_failures(center: LiveCenter, username: str) -> int:
    async with center.runtime.sessions() as db:
        row = await db.get(LoginThrottle, (ThrottleScope.ACCOUNT.value, username))
    return row.failures if row is not None else 0


async def test_the_current_password_is_guessed_no_faster_than_at_sign_in(
    center: LiveCenter, browsers: list[Browser]
) -> None:
    browser = await sign_in(center, "agent1001")  # someone who holds the agent's cookie, not the password
    browsers.append(browser)
    start = utcnow() - timedelta(seconds=32 * (ACCOUNT_POLICY.lock_after - 1))
    async with center.runtime.unit_of_work() as db:  # ten guesses, each after its delay, by our own clock
        for i in range(ACCOUNT_POLICY.lock_after):
            await begin_sign_in(
                session=db, username="agent1001", address="127.0.0.1", now=start + i * timedelta(seconds=32)
            )
    new = "another long password"
    form = {"csrf_token": browser.token, "current": PASSWORD, "password": new, "again": new}
    async with browser.http.post(f"{center.base_url}/password", data=form, allow_redirects=False) as response:
        assert response.status == 429  # even the right one, until the lock ends or an admin lifts it
        seconds = int(response.headers["Retry-After"])
        assert f"Too many failed sign-ins; try again in {seconds} seconds." in await response.text()


async def test_a_one_time_password_must_be_changed_first(center: LiveCenter, browsers: list[Browser]) -> None:
    from crm_core.users.service import set_password

    root = await admin_actor(center)
    async with center.runtime.unit_of_work() as db:  # an admin reset: a one-time password
        await set_password(
            session=db, actor=root, user_id=await user_id(center, "agent2001"), password="one-time password"
        )
    browser = await sign_in(center, "agent2001", "one-time password")
    browsers.append(browser)
    assert await replay(center, browser.cookie, browser.token) == {
        "desktop": (302, "/password"),
        "note": 403,
    }
    assert await refused(center, browser.cookie, "/agent")
    async with browser.http.get(f"{center.base_url}/password") as page:
        assert "One-time password" in await page.text()
    form = {"csrf_token": browser.token, "password": "my very own password", "again": "my very own password"}
    async with browser.http.post(f"{center.base_url}/password", data=form, allow_redirects=False) as response:
        assert response.status == 400  # the one-time password is the current one, and it is asked for
    async with browser.http.post(
        f"{center.base_url}/password", data=form | {"current": "one-time password"}, allow_redirects=False
    ) as response:
        assert response.status == 302
    assert await replay(center, browser.cookie, browser.token) == OPEN


async def test_no_query_per_socket_event_and_other_processes_seen_within_the_ttl(center: LiveCenter) -> None:
    agent = await sign_in(center, "agent1001")
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    try:
        client = await connect(center, agent.cookie, "/agent")
        event.listen(center.runtime.engine.sync_engine, "before_cursor_execute", count)
        try:
            for _ in range(20):
                await client.call("unpause", {}, namespace="/agent", timeout=5)
        finally:
            event.remove(center.runtime.engine.sync_engine, "before_cursor_execute", count)
        assert statements == []  # the standing is checked at connect, not per packet
        await client.disconnect()
    finally:
        await agent.http.close()
    # a change made by another process, whose event never reaches this one: seen once the TTL has passed
    now = [0.0]
    standing = SignedInUsers(center.runtime.sessions, ttl=5.0, clock=lambda: now[0])
    uid = await user_id(center, "agent1002")
    before = await standing.standing(uid)
    assert before is not None and before.active
    async with center.runtime.sessions() as db, db.begin():
        user = await db.get(User, uid)
        assert user is not None
        user.is_active = False
    now[0] = 4.9
    assert await standing.standing(uid) == before  # the cached answer, no query
    now[0] = 5.0
    after = await standing.standing(uid)
    assert after is not None and not after.active
    assert standing.reads == 2


async def test_sign_in_throttled_over_http_and_an_admin_lifts_the_lock(
    center: LiveCenter, browsers: list[Browser]
) -> None:
    async def try_password(password: str) -> aiohttp.ClientResponse:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(f"{center.base_url}/login") as page:
                token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
            assert token is not None
            async with http.post(
                f"{center.base_url}/login",
                data={"csrf_token": token.group(1), "username": "agent2001", "password": password},
                allow_redirects=False,
            ) as response:
                await response.read()
                return response

    wrong = await try_password("not the password")
    assert wrong.status == 401
    # ten more failed attempts, as a clock of our own sees them over the last minutes (each one waited its delay)
    start = utcnow() - timedelta(seconds=32 * (ACCOUNT_POLICY.lock_after - 1))
    async with center.runtime.unit_of_work() as db:
        for i in range(ACCOUNT_POLICY.lock_after - 1):  # the wrong password above was the first
            await begin_sign_in(
                session=db, username="agent2001", address="127.0.0.1", now=start + i * timedelta(seconds=32)
            )
    locked = await try_password(PASSWORD)
    assert locked.status == 429
    seconds = int(locked.headers["Retry-After"])
    assert 13 * 60 < seconds <= 15 * 60
    assert f"Too many failed sign-ins; try again in {seconds} seconds." in (await locked.text())
    admin, agent = await sign_in(center, "root"), await sign_in(center, "agent1001")
    browsers += [admin, agent]
    url = f"{center.base_url}/api/admin/users/{await user_id(center, 'agent2001')}/unlock"
    async with agent.http.post(url, headers={"X-CSRF-Token": agent.token}) as response:
        assert response.status == 403
    async with admin.http.post(url, headers={"X-CSRF-Token": admin.token}) as response:
        assert response.status == 200 and (await response.json())["lifted"] is True
    assert (await try_password(PASSWORD)).status == 302
    async with center.runtime.sessions() as db:
        entries = list(await db.scalars(select(AuditEntry).where(AuditEntry.action == "login")))
    mine = [(e.after or {}) for e in entries if (e.after or {}).get("username") == "agent2001"]
    assert [(m["outcome"], m["address"]) for m in mine].count(("failed", "127.0.0.1")) == 1
    assert [(m["outcome"], m["address"]) for m in mine].count(("succeeded", "127.0.0.1")) == 1
    unlocked = list(await _entries(center, await user_id(center, "agent2001"), "update"))
    assert [e.after for e in unlocked] == [{"sign_in_lock": "lifted"}]


async def _entries(center: LiveCenter, entity_id: str, action: str) -> list[AuditEntry]:
    async with center.runtime.sessions() as db:
        return list(
            await db.scalars(select(AuditEntry).where(AuditEntry.entity_id == entity_id, AuditEntry.action == action))
        )


async def test_the_default_namespace_lets_no_one_in(center: LiveCenter, browsers: list[Browser]) -> None:
    agent = await sign_in(center, "agent1001")
    browsers.append(agent)
    for cookie in ("", agent.cookie):  # anonymous or signed in: "/" carries nothing, and opens to no one
        for namespace in ("/", "/elsewhere"):
            client = socketio.AsyncClient(reconnection=False)
            with pytest.raises(socketio.exceptions.ConnectionError):
                await client.connect(
                    center.base_url,
                    headers={"Cookie": cookie} if cookie else {},
                    namespaces=[namespace],
                    transports=["websocket"],
                    wait_timeout=5,
                )
            await client.disconnect()
    assert not await refused(center, agent.cookie, "/agent")  # the namespaces of the product still open


@pytest.mark.redis
async def test_another_web_worker_hears_of_the_revocation_through_redis(center: LiveCenter) -> None:
    """Scaled out, the admin's change happens in one worker; another worker's cache lets go at once."""
    from crm_core.bus import RedisEventBus
    from crm_core.db import unit_of_work
    from crm_core.users.events import UserSessionsRevoked
    from tests.conftest import REDIS_URL

    channel = f"crm:test:{uuid.uuid4().hex}"
    here, there = RedisEventBus(REDIS_URL, channel), RedisEventBus(REDIS_URL, channel)
    await here.start()
    await there.start()
    try:
        never = [0.0]  # a clock that never moves: only the event can make this cache read again
        theirs = SignedInUsers(center.runtime.sessions, ttl=5.0, clock=lambda: never[0])
        theirs.attach(there)
        heard: asyncio.Queue[object] = asyncio.Queue()
        there.subscribe(UserSessionsRevoked, heard.put_nowait)
        uid = await user_id(center, "agent1002")
        before = await theirs.standing(uid)
        assert before is not None and before.active
        root = await admin_actor(center)
        async with unit_of_work(center.runtime.sessions, here) as db:  # this worker's unit of work, its bus
            await deactivate_user(session=db, actor=root, user_id=uid)
        received = await asyncio.wait_for(heard.get(), 5)
        assert isinstance(received, UserSessionsRevoked) and received.user_id == uid
        after = await theirs.standing(uid)
        assert after is not None and not after.active and after.version == before.version + 1
    finally:
        await here.close()
        await there.close()
