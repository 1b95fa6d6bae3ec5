"""The generic CTI endpoint's fast path: a well-formed, authenticated event is answered here, in front of Quart.

A PBX gateway pushes every call event of the center to `POST /api/cti/<pbx>/<token>`, and a newCall's screen pop
waits for it. Quart's request machinery (contexts, hooks, form parser, response wrapper) was about a seventh of the
server's busy time under pushed traffic (bench/generic_cti.py with py-spy), and every step of it ran before the pop.
This ASGI layer takes only the usual case — the right path, no query string, a form-encoded or JSON body within the
size limit, a known PBX and token, no control character anywhere — and applies it through the same function as the
route (`apply_event`). Everything else (a wrong token, multipart data, bad JSON, a body too large, a control
character, a web-only worker) is handed to Quart unchanged, with the body it already read, so that every refusal
keeps one implementation: the route's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from quart import Quart
from werkzeug.exceptions import InternalServerError

from agent_desktop.routes.common import CONTROL, CONTROL_BUT_LINES, SECURITY_HEADERS, json_object
from agent_desktop.routes.integrations import apply_event, authenticated
from crm_core.errors import ValidationFailed

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PREFIX = "/api/cti/"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
_HEADERS = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]


def _replaying(chunks: list[bytes], more_body: bool, receive: Receive) -> Receive:
    """A `receive` that gives the body already read again, then the rest of the request as it comes."""
    replayed = False

    async def again() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": more_body}
        return await receive()

    return again


def _mimetype(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return str(value.decode("latin-1").split(";", 1)[0].strip().lower())
    return ""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _form_fields(body: bytes) -> dict[str, Any] | None:
    """Form data as the route reads it (each field as the list of its values), or None where the route would refuse
    it (not UTF-8, a control character in a name or value)."""
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return None
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        if CONTROL_BUT_LINES.search(name) or CONTROL_BUT_LINES.search(value):
            return None
        fields.setdefault(name, []).append(value)
    return fields


def _json_fields(body: bytes) -> dict[str, Any] | None:
    """A JSON object as the route reads it, or None where the route would refuse it."""
    try:
        return json_object(body)
    except ValidationFailed:
        return None


class GenericCtiEdge:
    """ASGI: the fast path of the generic CTI endpoint, and Quart (`app`) for every other request."""

    def __init__(self, app: Quart) -> None:
        self.app = app
        limit = app.config.get("MAX_CONTENT_LENGTH")
        self.max_body = int(limit) if limit is not None else None
        self.answered = 0  # events answered here; the rest of the endpoint's requests went to the route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)  # type: ignore[arg-type]
            return
        await self._endpoint(scope, receive, send)

    async def _endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope["path"][len(PREFIX) :].split("/")
        mimetype = _mimetype(scope)
        length = _content_length(scope)
        if (
            len(parts) != 2
            or not all(parts)
            or any(CONTROL.search(part) for part in parts)
            or scope.get("query_string")
            or mimetype not in (FORM, JSON)
            or (length is not None and self.max_body is not None and length > self.max_body)
        ):
            await self.app(scope, receive, send)  # type: ignore[arg-type]
            return
        async with self.app.app_context():
            endpoint = authenticated(parts[0], parts[1])
            if endpoint is None or endpoint.adapter is None:
                await self.app(scope, receive, send)  # type: ignore[arg-type]
                return
            chunks: list[bytes] = []
            size = 0
            more_body = True
            while more_body:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the gateway went away before its event was whole: nothing to apply, nobody to answer
                chunk = message.get("body", b"")
                chunks.append(chunk)
                size += len(chunk)
                more_body = bool(message.get("more_body"))
                if self.max_body is not None and size > self.max_body:
                    break
            fields = None
            if not more_body:
                body = b"".join(chunks)
                fields = _form_fields(body) if mimetype == FORM else _json_fields(body)
            if fields is None:  # the route refuses it, in its own words
                await self.app(scope, _replaying(chunks, more_body, receive), send)  # type: ignore[arg-type]
                return
            try:
                answer, status = await apply_event(endpoint.adapter, fields)
            except Exception:  # as Quart would: logged, and a 500 in the API's error shape
                log.exception("the generic CTI event for %s failed", endpoint.name)
                answer = {"code": "internal_server_error", "message": InternalServerError.description}
                status = 500
        self.answered += 1
        payload = json.dumps(answer).encode()
        headers = [(b"content-type", JSON.encode()), (b"content-length", str(len(payload)).encode()), *_HEADERS]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})
