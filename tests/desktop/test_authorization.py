"""Who may do what: every HTTP route and every Socket.IO event, tried by every role, against one table."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import socketio

from agent_desktop.sockets import AGENT_EVENTS, SUPERVISOR_EVENTS
from tests.desktop.live import PASSWORD, LiveCenter

ROLES = ("anonymous", "agent", "supervisor", "marketer", "admin")
USER_OF = {"agent": "agent1001", "supervisor": "boss", "marketer": "mkt", "admin": "root"}
EVERYONE = set(ROLES)
SIGNED_IN = EVERYONE - {"anonymous"}
STAFF = {"agent", "supervisor", "admin"}
SUPERVISION = {"supervisor", "admin"}

# (method, rule) -> roles allowed. A route missing here fails the test: new routes must be decided on.
HTTP_TABLE: dict[tuple[str, str], set[str]] = {
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/"): EVERYONE,  # a redirect to where each role belongs
    ("GET", "/login"): EVERYONE,
    ("POST", "/login"): EVERYONE,
    ("POST", "/logout"): EVERYONE,
    ("GET", "/static/<path:filename>"): EVERYONE,
    ("GET", "/password"): SIGNED_IN,
    ("POST", "/password"): SIGNED_IN,
    ("GET", "/account"): SIGNED_IN,
    ("GET", "/desktop"): STAFF,
    ("GET", "/customers/<customer_id>"): STAFF,
    ("POST", "/api/customers"): STAFF,
    ("POST", "/api/customers/<customer_id>"): STAFF,
    ("POST", "/api/customers/<customer_id>/notes"): STAFF,
    ("POST", "/api/customers/<customer_id>/merge"): SUPERVISION,
    ("POST", "/api/calls/<linkedid>/ticket"): STAFF,
    ("GET", "/api/calls/<linkedid>/recording"): STAFF,
    ("GET", "/wallboard"): SUPERVISION,
    ("GET", "/api/wallboard/intervals"): SUPERVISION,
    ("GET", "/reports"): SUPERVISION,
    ("GET", "/reports.csv"): SUPERVISION,
    ("POST", "/api/admin/users/<user_id>/unlock"): {"admin"},
}
# (namespace, event) -> roles allowed; "connect" is the handshake itself. Admin "root" has no extension, so no
# agent device to work from: it may supervise but not take calls.
SOCKET_TABLE: dict[tuple[str, str], set[str]] = {
    ("/agent", "connect"): {"agent", "supervisor"},
    **{("/agent", e): {"agent", "supervisor"} for e in AGENT_EVENTS},
    ("/supervisor", "connect"): SUPERVISION,
    **{("/supervisor", e): SUPERVISION for e in SUPERVISOR_EVENTS},
}


async def signed_in(center: LiveCenter, role: str) -> tuple[aiohttp.ClientSession, str]:
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(f"{center.base_url}/login") as page:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert token is not None
    if role != "anonymous":
        async with http.post(
            f"{center.base_url}/login",
            allow_redirects=False,
            data={"csrf_token": token.group(1), "username": USER_OF[role], "password": PASSWORD},
        ) as r:
            assert r.status == 302
        async with http.get(f"{center.base_url}/account") as page:
            text = await page.text()
            meta = re.search(r'name="csrf-token" content="([^"]+)"', text)
            if meta:
                return http, meta.group(1)
    return http, token.group(1)


def concrete(rule: str, center: LiveCenter) -> str:
    return (
        rule.replace("<path:filename>", "app.css")
        .replace("<customer_id>", center.customers["Bob Example"])
        .replace("<linkedid>", "1795462442.0")
    )


async def http_outcome(http: aiohttp.ClientSession, token: str, method: str, url: str) -> str:
    kwargs: dict[str, Any] = {"allow_redirects": False, "headers": {"X-CSRF-Token": token}}
    if method == "POST":
        if url.endswith(("/login", "/logout", "/password")):
            kwargs["data"] = {"csrf_token": token}
        else:
            kwargs["json"] = {}
    async with http.request(method, url, **kwargs) as response:
        await response.read()  # the whole answer, as a browser would
        if url.endswith("/login") and response.status == 401:
            return "allowed"  # the form was used; the (empty) credentials were wrong
        if response.status in (401, 403):
            return "refused"
        if (
            response.status in (301, 302, 303)
            and "/login" in response.headers.get("Location", "")
            and not url.endswith(("/login", "/logout", "/"))
        ):
            return "refused"
        assert response.status < 500, f"{method} {url}: {response.status} {await response.text()}"
        return "allowed"


async def test_every_route_and_event_for_every_role(center: LiveCenter) -> None:
    app_rules = {
        (method, rule.rule)
        for rule in center_app(center).url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert app_rules == set(HTTP_TABLE), f"routes not in the table: {app_rules ^ set(HTTP_TABLE)}"
    got: dict[tuple[str, str, str], str] = {}
    want: dict[tuple[str, str, str], str] = {}
    for role in ROLES:
        http, token = await signed_in(center, role)
        try:
            # signing out last: every other request of this role is made while signed in
            for (method, rule), allowed in sorted(HTTP_TABLE.items(), key=lambda item: item[0][1] == "/logout"):
                got[(method, rule, role)] = await http_outcome(
                    http, token, method, f"{center.base_url}{concrete(rule, center)}"
                )
                want[(method, rule, role)] = "allowed" if role in allowed else "refused"
        finally:
            await http.close()
        cookie = await center.cookie(USER_OF[role]) if role != "anonymous" else ""
        for namespace in ("/agent", "/supervisor"):
            client = socketio.AsyncClient(reconnection=False)
            try:
                await client.connect(
                    center.base_url,
                    headers={"Cookie": cookie} if role != "anonymous" else {},
                    namespaces=[namespace],
                    transports=["websocket"],
                    wait_timeout=5,
                )
                connected = True
            except socketio.exceptions.ConnectionError:
                connected = False
            got[(namespace, "connect", role)] = "allowed" if connected else "refused"
            want[(namespace, "connect", role)] = (
                "allowed" if role in SOCKET_TABLE[(namespace, "connect")] else "refused"
            )
            for (ns, event), allowed in SOCKET_TABLE.items():
                if ns != namespace or event == "connect":
                    continue
                want[(ns, event, role)] = "allowed" if role in allowed else "refused"
                if not connected:
                    got[(ns, event, role)] = "refused"
                    continue
                # empty data: an allowed caller gets past the role check and is told what is missing
                ack = await client.call(event, {}, namespace=ns, timeout=5)
                got[(ns, event, role)] = "refused" if ack.get("code") == "permission_denied" else "allowed"
            if connected:
                await client.disconnect()
    mismatches = {key: (got[key], want[key]) for key in want if got.get(key) != want[key]}
    assert not mismatches, mismatches


def center_app(center: LiveCenter) -> Any:
    from quart import Quart

    from agent_desktop.app import create_app

    app: Quart = create_app(center.runtime)
    return app
