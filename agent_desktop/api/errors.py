"""How /api/v1 answers before and around its views: the token first, then the body's shape; every error in one
shape, {"code", "message", "details"}, the same the desktop's JSON already uses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import ValidationError as PydanticValidationError
from quart import current_app, request
from quart_schema.validation import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from agent_desktop.api.auth import RateLimited, authenticate
from agent_desktop.routes.common import json_depth_exceeds
from crm_core.errors import CrmError, ValidationFailed
from crm_core.inputs import first_problem
from crm_core.tokens.errors import InvalidToken

_BODY_METHODS = ("POST", "PUT", "PATCH")
_NO_BODY = "_api_takes_no_body"
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def no_body(view: F) -> F:
    """A POST that takes no body (an action on a record): an empty body passes; one that is sent is still checked."""
    setattr(view, _NO_BODY, True)
    return view


class BadBody(ValidationFailed):
    code = "bad_request"
    http_status = 400


def _error(error: CrmError) -> tuple[dict[str, Any], int, dict[str, str]]:
    headers: dict[str, str] = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.details.get("retry_after", "1"))
    elif isinstance(error, InvalidToken):
        headers["WWW-Authenticate"] = 'Bearer realm="crm"'
    return error.to_dict(), error.http_status, headers


async def check_token_then_body() -> None:
    """First who is calling (401, 429 before anything else is looked at), then that a body is one JSON object of
    UTF-8 text, not nested past reason (checked before the parser, which would recurse or fail on a stray byte)."""
    await authenticate()
    if request.method not in _BODY_METHODS:
        return
    data = await request.get_data(cache=True, as_text=False)
    raw = data if isinstance(data, bytes) else data.encode()
    view = current_app.view_functions.get(request.endpoint or "")
    if not raw and getattr(view, _NO_BODY, False):
        return
    if request.mimetype != "application/json":
        raise BadBody("Send a JSON body (Content-Type: application/json).", field="body")
    if json_depth_exceeds(raw):
        raise BadBody("The JSON body nests too deep.", field="body")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("The JSON body is not UTF-8 text.", field="body") from None
    if not isinstance(await request.get_json(silent=True), dict):
        raise BadBody("Send a JSON object.", field="body")


async def crm_error(error: CrmError) -> Any:
    return _error(error)


async def schema_error(error: RequestSchemaValidationError) -> Any:
    cause = error.validation_error
    if isinstance(cause, PydanticValidationError):
        field, sentence = first_problem(cause)
        return {"code": "validation_failed", "message": sentence, "details": {"field": field}}, 400
    return {"code": "validation_failed", "message": "The request does not match its schema.", "details": {}}, 400


async def http_error(error: HTTPException) -> Any:
    code = (error.name or "error").lower().replace(" ", "_")
    return {"code": code, "message": error.description or "", "details": {}}, error.code or 500
