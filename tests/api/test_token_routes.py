"""Which token scope opens which /api/v1 route: every route, tried with no token, with a token holding every scope
but the route's, and with a token holding only the route's. A route missing here fails the test."""

from __future__ import annotations

from typing import Any

import aiohttp

from crm_core.tokens.service import SCOPES
from tests.api.conftest import issue
from tests.desktop.live import LiveCenter
from tests.desktop.test_authorization import API_V1_ROUTES, center_app, concrete

SCOPE_OF: dict[tuple[str, str], str] = {
    ("GET", "/customers"): "customers:read",
    ("GET", "/customers/<customer_id>"): "customers:read",
    ("POST", "/customers"): "customers:write",
    ("PUT", "/customers/<customer_id>"): "customers:write",
    ("POST", "/customers/<customer_id>/merge"): "customers:write",
    ("GET", "/calls"): "calls:read",
    ("GET", "/calls/<linkedid>"): "calls:read",
    ("GET", "/calls/<linkedid>/recording"): "calls:read",
    ("GET", "/tickets"): "tickets:read",
    ("GET", "/tickets/<ticket_id>"): "tickets:read",
    ("POST", "/tickets"): "tickets:write",
    ("PATCH", "/tickets/<ticket_id>"): "tickets:write",
    ("GET", "/sms"): "sms:read",
    ("POST", "/sms"): "sms:write",
    ("GET", "/users"): "users:read",
    ("GET", "/users/<user_id>"): "users:read",
    ("GET", "/webhooks/subscriptions"): "webhooks:admin",
    ("POST", "/webhooks/subscriptions"): "webhooks:admin",
    ("GET", "/webhooks/subscriptions/<subscription_id>"): "webhooks:admin",
    ("PATCH", "/webhooks/subscriptions/<subscription_id>"): "webhooks:admin",
    ("DELETE", "/webhooks/subscriptions/<subscription_id>"): "webhooks:admin",
    ("POST", "/webhooks/subscriptions/<subscription_id>/rotate-secret"): "webhooks:admin",
    ("GET", "/webhooks/subscriptions/<subscription_id>/deliveries"): "webhooks:admin",
    ("POST", "/webhooks/deliveries/<delivery_id>/replay"): "webhooks:admin",
}


async def _status(http: aiohttp.ClientSession, method: str, url: str, secret: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
    async with http.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_every_route_needs_its_scope(center: LiveCenter) -> None:
    app_routes = {
        (method, rule.rule.removeprefix("/api/v1"))
        for rule in center_app(center).url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert app_routes == set(SCOPE_OF) == set(API_V1_ROUTES)
    only: dict[str, str] = {}
    all_but: dict[str, str] = {}
    for scope in SCOPES:
        only[scope] = (await issue(center, f"only {scope.replace(':', ' ')}", [scope]))[1]
        all_but[scope] = (await issue(center, f"all but {scope.replace(':', ' ')}", [s for s in SCOPES if s != scope]))[
            1
        ]
    got: dict[tuple[str, str, str], str] = {}
    async with aiohttp.ClientSession() as http:
        for (method, rule), scope in SCOPE_OF.items():
            url = center.base_url + "/api/v1" + concrete(rule, center)
            for holder, secret in (("none", None), ("all but", all_but[scope]), ("only", only[scope])):
                status, body = await _status(http, method, url, secret)
                assert status < 500, (method, rule, status, body)
                assert status < 400 or set(body) == {"code", "message", "details"}, (method, rule, status, body)
                got[(method, rule, holder)] = (
                    "unauthenticated" if status == 401 else body["code"] if status == 403 else "allowed"
                )
    want = {
        (method, rule, holder): {"none": "unauthenticated", "all but": "insufficient_scope", "only": "allowed"}[holder]
        for (method, rule) in SCOPE_OF
        for holder in ("none", "all but", "only")
    }
    assert got == want
