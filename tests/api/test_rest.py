"""The REST API over real HTTP with real tokens: customers (search with cursors, read, create, replace with
If-Match, merge), calls, tickets, SMS and users; one error shape; each use audited under the token's name."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import aiohttp
from sqlalchemy import select

from crm_core.audit.models import AuditEntry
from crm_core.calls.models import CallLog
from crm_core.customers.models import Customer
from crm_core.db import utcnow
from crm_core.sms.models import SmsConsentChange, SmsMessage
from crm_core.tokens.models import ApiToken
from tests.api.conftest import issue
from tests.desktop.live import LiveCenter
from tests.desktop.test_authorization import signed_in

ERROR_KEYS = {"code", "message", "details"}


class Api:
    """A client of the API with one token, as an integration would be."""

    def __init__(self, center: LiveCenter, secret: str | None) -> None:
        self.base = center.base_url + "/api/v1"
        self.http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {secret}"} if secret else {})

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        async with self.http.request(method, self.base + path, **kwargs) as response:
            body = await response.read()
            return response.status, json.loads(body) if body else None, response.headers

    async def close(self) -> None:
        await self.http.close()


async def token_audit(center: LiveCenter, token_id: str) -> list[dict[str, Any]]:
    async with center.runtime.sessions() as db:
        rows = await db.scalars(
            select(AuditEntry).where(AuditEntry.entity_type == "api_token", AuditEntry.entity_id == token_id)
        )
        return [
            dict(r.after or {}, action=r.action) for r in rows if r.action != "create" or "token" in (r.after or {})
        ]


async def test_customers_search_read_create_replace_and_merge(center: LiveCenter) -> None:
    token_id, secret = await issue(center, "shop", ["customers:read", "customers:write"])
    api = Api(center, secret)
    try:
        # create; a look-alike is refused with its candidates, unless asked for
        status, created, headers = await api.call(
            "POST", "/customers", json={"name": "Carol Shop", "phones": [{"number": "(555) 123-7777"}], "tags": ["vip"]}
        )
        assert status == 201 and created["phones"] == [
            {"number": "+15551237777", "label": "mobile", "is_primary": True}
        ]
        assert headers["Location"] == f"/api/v1/customers/{created['id']}" and headers["ETag"] == created["version"]
        status, duplicate, _ = await api.call(
            "POST", "/customers", json={"name": "C. Shop", "phones": [{"number": "+15551237777"}]}
        )
        assert status == 409 and duplicate["code"] == "duplicate_customer"
        assert [c["id"] for c in duplicate["details"]["candidates"]] == [created["id"]]
        status, twin, _ = await api.call(
            "POST",
            "/customers",
            json={"name": "C. Shop", "phones": [{"number": "+15551237777"}], "allow_duplicate": True},
        )
        assert status == 201

        # search by a written form of the number, then read (audited as a read of the customer)
        status, found, _ = await api.call("GET", "/customers", params={"q": "+1 555-123-7777"})
        assert status == 200 and {c["id"] for c in found["items"]} == {created["id"], twin["id"]}
        status, read, headers = await api.call("GET", f"/customers/{created['id']}")
        assert status == 200 and read == created and headers["ETag"] == created["version"]

        # replace: If-Match of the last read passes once; the stale one is refused with 412 and nothing written
        change = {"name": "Carol Shop", "city": "Springfield", "phones": [{"number": "+15551237777"}], "tags": ["vip"]}
        status, missing, _ = await api.call("PUT", f"/customers/{created['id']}", json=change)
        assert status == 428 and missing["code"] == "precondition_required"
        status, updated, headers = await api.call(
            "PUT", f"/customers/{created['id']}", json=change, headers={"If-Match": created["version"]}
        )
        assert status == 200 and updated["city"] == "Springfield" and updated["version"] != created["version"]
        stale = {**change, "city": "Shelbyville"}
        status, refused, _ = await api.call(
            "PUT", f"/customers/{created['id']}", json=stale, headers={"If-Match": created["version"]}
        )
        assert status == 412 and refused["code"] == "precondition_failed"
        assert refused["details"]["current_version"] == updated["version"]
        async with center.runtime.sessions() as db:
            assert (await db.get(Customer, created["id"])).city == "Springfield"  # type: ignore[union-attr]

        # merge the twin in
        status, kept, _ = await api.call("POST", f"/customers/{created['id']}/merge", json={"merge_id": twin["id"]})
        assert status == 200 and kept["id"] == created["id"]
        status, gone, _ = await api.call("GET", f"/customers/{twin['id']}")
        assert gone["merged_into_id"] == created["id"]
    finally:
        await api.close()
    uses = await token_audit(center, token_id)
    assert [(u["method"], u["status"]) for u in uses].count(("PUT", 412)) == 1
    assert {u["token"] for u in uses} == {"shop"} and len(uses) == 10  # every request, refused ones too
    async with center.runtime.sessions() as db:
        reads = await db.scalars(
            select(AuditEntry.entity_id).where(AuditEntry.entity_type == "customer", AuditEntry.action == "read")
        )
        assert created["id"] in set(reads)


async def test_search_pages_with_a_cursor_and_bad_input_gets_one_error_shape(center: LiveCenter) -> None:
    _token_id, secret = await issue(center, "pager", ["customers:read", "customers:write"])
    api = Api(center, secret)
    try:
        for n in range(30):
            status, _, _ = await api.call("POST", "/customers", json={"name": f"Pagey {n:02d}"})
            assert status == 201
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(5):
            status, page, _ = await api.call(
                "GET", "/customers", params={"q": "Pagey", **({"cursor": cursor} if cursor else {})}
            )
            assert status == 200
            seen += [c["name"] for c in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [f"Pagey {n:02d}" for n in range(30)]

        for method, path, kwargs, want in (
            ("GET", "/customers", {"params": {"cursor": "bm90LWEtY3Vyc29y"}}, (422, "validation_failed")),
            (
                "POST",
                "/customers",
                {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
                (400, "bad_request"),
            ),
            (
                "POST",
                "/customers",
                {"data": b"\xff\xfe", "headers": {"Content-Type": "application/json"}},
                (400, "bad_request"),
            ),
            ("POST", "/customers", {"json": {"name": "X", "shoe_size": 44}}, (400, "validation_failed")),
            (
                "POST",
                "/customers",
                {"json": {"name": "X", "custom_fields": {"a": "\u0000"}}},
                (422, "validation_failed"),
            ),
            ("POST", "/customers", {"json": {"name": "X", "owner_id": "0" * 32}}, (404, "not_found")),
            (
                "POST",
                "/customers",
                {"json": {"name": "X", "phones": [{"number": "not a phone"}]}},
                (422, "invalid_phone_number"),
            ),
            (
                "POST",
                "/customers",
                {
                    "data": '{"name": "X", "custom_fields": ' + '{"a": ' * 40 + "1" + "}" * 41,
                    "headers": {"Content-Type": "application/json"},
                },
                (400, "bad_request"),
            ),
            ("GET", "/customers/" + "0" * 32, {}, (404, "not_found")),
        ):
            status, body, _ = await api.call(method, path, **kwargs)
            assert (status, body.get("code")) == want, (method, path, kwargs, status, body)
            assert set(body) == ERROR_KEYS and body["message"], body
        async with center.runtime.sessions() as db:  # nothing half-written
            assert await db.scalar(select(Customer.id).where(Customer.name == "X")) is None
    finally:
        await api.close()


async def test_calls_tickets_sms_and_users(center: LiveCenter) -> None:
    _token_id, secret = await issue(
        center, "desk", ["calls:read", "tickets:read", "tickets:write", "sms:read", "sms:write", "users:read"]
    )
    alice = center.customers["Alice Example"]
    now = utcnow()
    async with center.runtime.unit_of_work() as db:
        for n in range(3):
            db.add(
                CallLog(
                    linkedid=f"api.{n}",
                    direction="inbound",
                    caller_number="+15551230001",
                    customer_id=alice if n != 1 else None,
                    offered_at=now - timedelta(minutes=n),
                    outcome="answered",
                    recording_ref="demo/api.0.wav" if n == 0 else None,
                )
            )
    api = Api(center, secret)
    try:
        status, first, _ = await api.call("GET", "/calls", params={"limit": 2})
        assert status == 200 and [c["linkedid"] for c in first["items"]] == ["api.0", "api.1"]
        status, rest, _ = await api.call("GET", "/calls", params={"limit": 2, "cursor": first["next_cursor"]})
        assert [c["linkedid"] for c in rest["items"]] == ["api.2"] and rest["next_cursor"] is None
        status, alices, _ = await api.call("GET", "/calls", params={"customer_id": alice})
        assert [c["linkedid"] for c in alices["items"]] == ["api.0", "api.2"]
        status, call, _ = await api.call("GET", "/calls/api.0")
        assert status == 200 and call["has_recording"] is True
        status, link, _ = await api.call("GET", "/calls/api.0/recording")
        assert link == {"linkedid": "api.0", "available": True, "url": "/api/calls/api.0/recording"}
        status, link, _ = await api.call("GET", "/calls/api.1/recording")
        assert link["available"] is False and link["url"] is None

        status, ticket, headers = await api.call(
            "POST", "/tickets", json={"subject": "From the shop", "customer_id": alice, "priority": "high"}
        )
        assert status == 201 and ticket["status"] == "open" and headers["Location"].endswith(ticket["id"])
        status, listed, _ = await api.call("GET", "/tickets", params={"customer_id": alice, "priority": "high"})
        assert [t["subject"] for t in listed["items"]] == ["From the shop"]
        status, changed, _ = await api.call("PATCH", f"/tickets/{ticket['id']}", json={"status": "resolved"})
        assert status == 200 and changed["status"] == "resolved" and changed["resolved_at"] is not None
        status, bad, _ = await api.call("PATCH", f"/tickets/{ticket['id']}", json={"status": "done"})
        assert status == 400 and bad["details"]["field"] == "status"

        status, refused, _ = await api.call("POST", "/sms", json={"to": "+15551230001", "body": "Hello"})
        assert status == 409 and refused["code"] == "sms_not_configured"
        center.runtime.settings = center.runtime.settings.model_copy(update={"sms_sender": "+15550009999"})
        status, sent, _ = await api.call("POST", "/sms", json={"to": "(555) 123-0001", "body": "Your order shipped"})
        assert status == 202 and sent["status"] == "queued" and sent["to_number"] == "+15551230001"
        assert sent["customer_id"] == alice
        async with center.runtime.unit_of_work() as db:
            db.add(SmsConsentChange(number="+15551230002", opted_out=True, source="keyword", detail="STOP"))
        status, opted, _ = await api.call("POST", "/sms", json={"to": "+15551230002", "body": "Promo"})
        assert status == 409 and opted["code"] == "opted_out"
        status, messages, _ = await api.call("GET", "/sms", params={"customer_id": alice})
        assert [m["body"] for m in messages["items"]] == ["Your order shipped"]
        async with center.runtime.sessions() as db:
            assert await db.scalar(select(SmsMessage.id).where(SmsMessage.body == "Promo")) is None

        status, agents, _ = await api.call("GET", "/users", params={"role": "agent"})
        assert sorted(u["username"] for u in agents["items"]) == ["agent1001", "agent1002", "agent2001"]
        status, one, _ = await api.call("GET", f"/users/{agents['items'][0]['id']}")
        assert status == 200 and "password_hash" not in one
    finally:
        await api.close()


async def test_who_may_call_scopes_revocation_and_sessions(center: LiveCenter) -> None:
    token_id, secret = await issue(center, "reader", ["customers:read"])
    bob = center.customers["Bob Example"]
    api, stranger, bare = Api(center, secret), Api(center, "crm_" + "x" * 43), Api(center, None)
    try:
        status, _, _ = await api.call("GET", f"/customers/{bob}")
        assert status == 200
        status, body, _ = await api.call("POST", "/customers", json={"name": "Not allowed"})
        assert status == 403 and body["code"] == "insufficient_scope" and body["details"]["scope"] == "customers:write"
        for client in (stranger, bare):
            status, body, headers = await client.call("GET", f"/customers/{bob}")
            assert (
                status == 401 and body["code"] == "invalid_token" and headers["WWW-Authenticate"].startswith("Bearer")
            )

        # a signed-in supervisor's session (cookie and CSRF header) does not open /api/v1: only a token does
        http, csrf = await signed_in(center, "supervisor")
        try:
            async with http.get(f"{center.base_url}/api/v1/customers/{bob}", headers={"X-CSRF-Token": csrf}) as r:
                assert r.status == 401
            async with http.post(
                f"{center.base_url}/api/v1/customers", json={"name": "By cookie"}, headers={"X-CSRF-Token": csrf}
            ) as r:
                assert r.status == 401
        finally:
            await http.close()

        # revoked: the next request is refused
        async with center.runtime.unit_of_work() as db:
            token = await db.get(ApiToken, token_id)
            assert token is not None and token.last_used_at is not None
            assert secret not in json.dumps([token.name, token.prefix, token.secret_hash, token.scopes])
            token.revoked_at = utcnow()
        status, body, _ = await api.call("GET", f"/customers/{bob}")
        assert status == 401 and body["code"] == "invalid_token"
    finally:
        for client in (api, stranger, bare):
            await client.close()
    uses = await token_audit(center, token_id)
    assert [(u["action"], u["method"], u["status"]) for u in uses] == [("read", "GET", 200), ("create", "POST", 403)]


async def test_rate_limit_answers_429_with_retry_after(center: LiveCenter) -> None:
    token_id, secret = await issue(center, "tight", ["users:read"], rate_per_minute=3)
    _other_id, other = await issue(center, "roomy", ["users:read"], rate_per_minute=3)
    api, neighbour = Api(center, secret), Api(center, other)
    try:
        assert [(await api.call("GET", "/users"))[0] for _ in range(3)] == [200, 200, 200]
        status, body, headers = await api.call("GET", "/users")
        assert status == 429 and body["code"] == "rate_limited" and set(body) == ERROR_KEYS
        assert 1 <= int(headers["Retry-After"]) <= 20  # one request of three a minute comes back within 20 s
        assert (await neighbour.call("GET", "/users"))[0] == 200  # a bucket per token
    finally:
        await api.close()
        await neighbour.close()
    uses = await token_audit(center, token_id)
    assert [u["status"] for u in uses] == [200, 200, 200, 429]


async def test_the_token_screen_keeps_csrf_and_admins(center: LiveCenter) -> None:
    """Cookie sessions still need the CSRF header (tokens need none: they are not sent by a browser on its own)."""
    form = {"name": "Forged", "scopes": "customers:read"}
    for role, csrf_sent, want in (("admin", False, 400), ("supervisor", True, 403), ("admin", True, 200)):
        http, csrf = await signed_in(center, role)
        try:
            headers = {"X-CSRF-Token": csrf} if csrf_sent else {}
            async with http.post(f"{center.base_url}/admin/tokens", data=form, headers=headers) as response:
                assert response.status == want, (role, csrf_sent, await response.text())
                page = await response.text()
        finally:
            await http.close()
    assert 'class="secret">crm_' in page
    async with center.runtime.sessions() as db:
        assert list(await db.scalars(select(ApiToken.name))) == ["Forged"]  # made once, by the admin with CSRF
