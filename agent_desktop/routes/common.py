"""What every blueprint needs: the runtime of this app, the signed-in actor, a JSON body, a date argument, and the
check that refuses control characters in any path part, query argument or form field."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

from quart import abort, current_app, request

from agent_desktop.auth import current_actor
from agent_desktop.runtime import Runtime
from crm_core.errors import ValidationFailed
from crm_core.users.models import Role
from crm_core.users.service import Actor

STAFF = (Role.AGENT, Role.SUPERVISOR)
MAX_JSON_DEPTH = 32  # our bodies are flat; the parser itself recurses, and a RecursionError is a 500
_JSON_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENING = frozenset(b"[{")
# In a path part or a query argument: no control character at all. In a form field: line breaks and tabs may pass.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# on every response (set in app.py after each request, and by the generic CTI fast path in cti_edge.py)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def runtime() -> Runtime:
    value: Runtime = current_app.extensions["runtime"]
    return value


def actor() -> Actor:
    signed_in = current_actor()
    if signed_in is None:  # roles_allowed already refused anonymous callers
        abort(401)
    return signed_in


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text `body` nests arrays and objects deeper than `limit` (brackets inside strings aside)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # cannot be deeper than it has brackets: the usual body costs two counts
    depth = 0
    for byte in _JSON_STRINGS.sub(b"", body).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in _OPENING else -1
        if depth > limit:
            return True
    return False


def json_object(raw: bytes) -> dict[str, Any]:
    """`raw` as one JSON object, or ValidationFailed: checked for nesting and UTF-8 before the parser sees it."""
    if json_depth_exceeds(raw):
        raise ValidationFailed(f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels.", field="body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed("The JSON body is not UTF-8 text.", field="body") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ValidationFailed("Send a JSON object.", field="body")
    return data


async def json_body() -> dict[str, Any]:
    """The request's JSON object, or ValidationFailed (not Quart's get_json: it decodes outside its `silent` guard,
    so a stray byte would be a 500)."""
    data = json_object(await request.get_data(cache=True))
    if not request.is_json:  # a JSON object sent as something else is still not one
        raise ValidationFailed("Send a JSON object.", field="body")
    return data


def day_argument(value: str | None, default: date, *, name: str = "date") -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{name} is not a date (YYYY-MM-DD).", field=name) from None


class BadInput(ValidationFailed):
    """Refused before any handler ran (a control character in the request itself)."""

    code = "bad_request"
    http_status = 400


def _refuse(kind: str, name: str, pattern: re.Pattern[str], value: str) -> None:
    found = pattern.search(name) or pattern.search(value)
    if found:
        shown = name if not pattern.search(name) and len(name) <= 40 else repr(name[:40])
        raise BadInput(f"The {kind} {shown} contains a control character (U+{ord(found.group()):04X}).", field=name)


async def refuse_control_characters() -> None:
    """Before every request: a NUL or another control character in a path part, a query argument or a form field
    is refused here, with a 400 naming it, before any database (PostgreSQL stores no NUL) or page sees it."""
    for name, value in (request.view_args or {}).items():
        _refuse("path part", name, CONTROL, str(value))
    for name, value in request.args.items(multi=True):
        _refuse("query argument", name, CONTROL, value)
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        for name, value in (await request.form).items(multi=True):
            _refuse("form field", name, CONTROL_BUT_LINES, value)
