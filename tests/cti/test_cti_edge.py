"""The generic CTI endpoint's fast path (agent_desktop/cti_edge.py), over real HTTP: a well-formed event is answered
in front of Quart with the app's own headers, and every other request to the endpoint reaches the route unchanged —
body included — so that each refusal is the route's, word for word, and nothing is applied twice or half."""

# ruff: noqa: F811  (the fixtures `center` and `gateway` come from test_generic_cti, named as its tests name them)
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from agent_desktop.cti_edge import GenericCtiEdge
from agent_desktop.routes.common import SECURITY_HEADERS
from tests.cti.test_generic_cti import PBX, TOKEN, center, gateway, recorded  # noqa: F401  (fixtures)
from tests.desktop.live import LiveCenter

URL = "/api/cti/{pbx}/{token}"
FORM = "application/x-www-form-urlencoded"


def edge_of(live: LiveCenter) -> GenericCtiEdge:
    edge = live.asgi.other_asgi_app
    assert isinstance(edge, GenericCtiEdge)
    return edge


def live_calls(live: LiveCenter) -> set[str]:
    assert live.pbxes is not None
    return set(live.pbxes.generic[PBX].tracker.calls)


async def send(
    live: LiveCenter, data: bytes, content_type: str | None, *, path: str | None = None, query: str = ""
) -> tuple[int, dict[str, Any], dict[str, str]]:
    url = live.base_url + (path or URL.format(pbx=PBX, token=TOKEN)) + query
    headers = {"Content-Type": content_type} if content_type else {}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=data, headers=headers) as response:
            return response.status, json.loads(await response.read()), dict(response.headers)


def new_call(call_id: str) -> dict[str, Any]:
    body = dict(recorded("inbound_answered")["steps"][0]["body"])
    body["callId"] = call_id
    return body


def form(body: dict[str, Any]) -> bytes:
    return urlencode([(k, item) for k, v in body.items() for item in (v if isinstance(v, list) else [v])]).encode()


async def test_well_formed_events_are_answered_in_front_of_quart_with_the_apps_headers(center: LiveCenter) -> None:
    edge = edge_of(center)
    before = edge.answered
    as_form = await send(center, form(new_call("edge-1")), FORM)
    as_json = await send(center, json.dumps(new_call("edge-2")).encode(), "application/json; charset=utf-8")
    assert (as_form[0], as_form[1]) == (200, {}) and (as_json[0], as_json[1]) == (200, {})
    assert edge.answered == before + 2
    assert {"tapi:edge-1", "tapi:edge-2"} <= live_calls(center)
    # the same headers as the app's own answers (a refusal here is Quart's)
    refused = await send(
        center, form(new_call("edge-3")), "application/x-www-form-urlencoded", path=URL.format(pbx=PBX, token="wrong")
    )
    assert refused[0] == 403 and edge.answered == before + 2
    for _, _, headers in (as_form, as_json, refused):
        assert headers["Content-Type"].startswith("application/json")
        for name, value in SECURITY_HEADERS.items():
            assert headers[name] == value


async def test_a_malformed_event_on_the_fast_path_gets_the_routes_message(center: LiveCenter) -> None:
    edge = edge_of(center)
    before = edge.answered
    status, reply, _ = await send(center, b"event=ring&callId=x&direction=in", FORM)
    assert (status, reply["code"], reply["message"]) == (
        400,
        "invalid_event",
        "'event' must be newCall, answer or hangup.",
    )
    assert edge.answered == before + 1 and live_calls(center) == set()
    # form data that is not UTF-8 is the route's, and said so (Quart alone would parse it as no fields at all)
    status, reply, _ = await send(center, b"event=newCall&callId=\xff&direction=in", FORM)
    assert (status, reply["message"]) == (400, "The form data is not UTF-8 text.")
    assert edge.answered == before + 1 and live_calls(center) == set()


@pytest.mark.parametrize(
    ("case", "data", "content_type", "path", "query", "status", "code"),
    [
        ("wrong token", None, FORM, URL.format(pbx=PBX, token="nope"), "", 403, "forbidden"),
        ("unknown PBX", None, FORM, URL.format(pbx="other", token=TOKEN), "", 403, "forbidden"),
        ("NUL in the token", None, FORM, URL.format(pbx=PBX, token="a%00b"), "", 400, "bad_request"),
        (
            "control character in a field",
            b"event=newCall&callId=a%01b&direction=in",
            FORM,
            None,
            "",
            400,
            "bad_request",
        ),
        ("control character in a name", b"ev%07ent=newCall&callId=ab&direction=in", FORM, None, "", 400, "bad_request"),
        ("control character in the query", None, FORM, None, "?x=%01", 400, "bad_request"),
        ("a JSON array", b"[1, 2]", "application/json", None, "", 400, "invalid_event"),
        ("JSON too deep", b'{"a":' * 40 + b"1" + b"}" * 40, "application/json", None, "", 400, "invalid_event"),
        ("JSON that is not JSON", b'{"event": ', "application/json", None, "", 400, "invalid_event"),
        ("JSON not UTF-8", b'{"event": "\xff"}', "application/json", None, "", 400, "invalid_event"),
        ("form not UTF-8", b"event=newCall&callId=\xff&direction=in", FORM, None, "", 400, "invalid_event"),
        ("plain text", b"event=newCall", "text/plain", None, "", 400, "invalid_event"),
        ("no content type", b"event=newCall", None, None, "", 400, "invalid_event"),
    ],
)
async def test_every_other_request_is_refused_by_the_route_and_applies_nothing(
    center: LiveCenter,
    case: str,
    data: bytes | None,
    content_type: str | None,
    path: str | None,
    query: str,
    status: int,
    code: str,
) -> None:
    edge = edge_of(center)
    before = edge.answered
    body = data if data is not None else form(new_call("refused"))
    got_status, reply, headers = await send(center, body, content_type, path=path, query=query)
    assert (got_status, reply["code"]) == (status, code), (case, reply)
    assert "Traceback" not in json.dumps(reply)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert edge.answered == before and live_calls(center) == set()


async def test_what_the_fast_path_leaves_to_the_route_is_still_applied_once(center: LiveCenter) -> None:
    """Multipart form data and a query string are the route's: the event is applied there, with the body the fast path
    had already read (for the query string) given to it again."""
    edge = edge_of(center)
    before = edge.answered
    multipart = aiohttp.FormData()
    for key, value in new_call("by-route-1").items():
        for item in value if isinstance(value, list) else [value]:
            multipart.add_field(key, item, content_type="text/plain")  # a content type makes it multipart
    async with aiohttp.ClientSession() as http:
        async with http.post(center.base_url + URL.format(pbx=PBX, token=TOKEN), data=multipart) as response:
            assert response.status == 200 and response.content_type == "application/json"
    status, reply, _ = await send(center, form(new_call("by-route-2")), FORM, query="?source=gateway")
    assert (status, reply) == (200, {})
    assert edge.answered == before
    assert live_calls(center) == {"tapi:by-route-1", "tapi:by-route-2"}


async def raw_post(live: LiveCenter, head: bytes, body: bytes) -> bytes:
    """One request written by hand on a new connection; what came back (empty if the server closed first)."""
    host, port = live.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + body)
        await writer.drain()
    except ConnectionError:  # refused before the whole body was written
        pass
    try:
        return await reader.read(65536)
    finally:
        writer.close()


async def test_a_body_over_the_limit_is_413_whether_announced_or_streamed(center: LiveCenter) -> None:
    edge = edge_of(center)
    before = edge.answered
    big = b"event=newCall&callId=big&direction=in&x=" + b"y" * (2 * 1024 * 1024)
    path = URL.format(pbx=PBX, token=TOKEN)
    announced = await raw_post(
        center,
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nContent-Length: {len(big)}\r\n\r\n".encode(),
        big,
    )
    assert announced.startswith(b"HTTP/1.1 413"), announced[:200]

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 256 * 1024):
            yield big[start : start + 256 * 1024]

    async with aiohttp.ClientSession() as http:  # no length announced: chunked, counted as it comes
        async with http.post(center.base_url + path, data=chunks(), headers={"Content-Type": FORM}) as response:
            assert response.status == 413
            assert (await response.json())["code"] == "request_entity_too_large"
    assert edge.answered == before and live_calls(center) == set()


async def test_a_gateway_that_goes_away_mid_body_applies_nothing(center: LiveCenter) -> None:
    edge = edge_of(center)
    before = edge.answered
    host, port = center.base_url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    whole = form(new_call("cut-off"))
    writer.write(
        f"POST {URL.format(pbx=PBX, token=TOKEN)} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: {FORM}\r\nContent-Length: {len(whole)}\r\n\r\n".encode()
        + whole[: len(whole) // 2]
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    # the next event on a new connection is applied; the cut-off one never was
    status, _, _ = await send(center, form(new_call("after")), FORM)
    assert status == 200 and edge.answered == before + 1
    assert live_calls(center) == {"tapi:after"}
