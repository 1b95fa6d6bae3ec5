"""Who is signed in: the Quart session (a signed cookie) for pages and API, the same cookie for Socket.IO."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from itsdangerous import BadSignature
from quart import Quart, abort, redirect, request, session, url_for

from crm_core.users.models import Role
from crm_core.users.service import Actor

CSRF_KEY = "csrf_token"
SESSION_COOKIE = "crm_session"
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def csrf_token() -> str:
    token = session.get(CSRF_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_KEY] = token
    return str(token)


def check_csrf(form_token: str | None) -> None:
    expected = session.get(CSRF_KEY)
    # compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500, for a forged token)
    if not expected or not form_token or not secrets.compare_digest(str(expected).encode(), form_token.encode()):
        abort(400, "The form expired; reload the page and try again.")


def actor_from(data: dict[str, Any]) -> Actor | None:
    if not data.get("user_id") or not data.get("role"):
        return None
    try:
        return Actor(user_id=str(data["user_id"]), role=Role(data["role"]), extension=data.get("extension"))
    except ValueError:
        return None


def current_actor() -> Actor | None:
    return actor_from(dict(session))


def roles_allowed(*roles: Role, api: bool = False) -> Callable[[F], F]:
    """Only these roles (admins always) may use the view. API views also need the CSRF header when they change."""

    def decorate(view: F) -> F:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            actor = current_actor()
            if actor is None:
                if api:
                    abort(401, "Sign in first.")
                return redirect(url_for("auth.login", next=request.path))
            if session.get("must_change_password") and request.endpoint not in ("auth.password", "auth.logout"):
                if api:
                    abort(403, "Change your one-time password first.")
                return redirect(url_for("auth.password"))
            if actor.role is not Role.ADMIN and actor.role not in roles:
                abort(403, "Your role may not open this.")
            if api and request.method not in ("GET", "HEAD"):
                check_csrf(request.headers.get("X-CSRF-Token"))
            return await view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def session_from_cookie(app: Quart, cookie_header: str) -> dict[str, Any] | None:
    """Decode the signed session cookie sent with a Socket.IO handshake (None when absent, forged or expired)."""
    value = None
    for part in cookie_header.split(";"):
        name, _, raw = part.strip().partition("=")
        if name == SESSION_COOKIE:
            value = raw
    if not value:
        return None
    serializer = app.session_interface.get_signing_serializer(app)
    if serializer is None:
        return None
    try:
        data = serializer.loads(value, max_age=int(app.permanent_session_lifetime.total_seconds()))
    except BadSignature:
        return None
    return dict(data) if isinstance(data, dict) else None
