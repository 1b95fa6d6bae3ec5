"""Who is signed in: the Quart session (a signed cookie carrying the user id and session version) for pages and
API, the same cookie for Socket.IO; every request and every socket connect checks the user is still active and
the version still current, through a small cache that a UserSessionsRevoked empties at once."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from itsdangerous import BadSignature
from quart import Quart, abort, current_app, g, redirect, request, session, url_for
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.bus import EventBus
from crm_core.users.events import UserSessionsRevoked
from crm_core.users.models import Role, User
from crm_core.users.service import Actor

CSRF_KEY = "csrf_token"
SESSION_COOKIE = "crm_session"
VERSION_KEY = "sv"
# How long another process's change may go unseen when its event cannot reach this one (no Redis bus).
STANDING_TTL_S = 5.0
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True, slots=True)
class Standing:
    """What the database says of a signed-in user now."""

    user_id: str
    version: int
    role: Role
    extension: str | None
    active: bool
    must_change_password: bool

    @property
    def actor(self) -> Actor:
        return Actor(user_id=self.user_id, role=self.role, extension=self.extension)


class SignedInUsers:
    """Each user's standing, read at most once per `ttl` seconds: no query per request or per socket packet, and
    forgotten as soon as UserSessionsRevoked arrives (from any process, when the bus is Redis)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl: float = STANDING_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._clock = clock
        self._known: dict[str, tuple[float, Standing | None]] = {}
        self._generation: dict[str, int] = {}
        self.reads = 0

    def attach(self, bus: EventBus) -> None:
        bus.subscribe(UserSessionsRevoked, self._revoked)

    def _revoked(self, event: UserSessionsRevoked) -> None:
        self.forget(event.user_id)

    def forget(self, user_id: str) -> None:
        self._known.pop(user_id, None)
        # a read that started before this must not put back what it saw
        self._generation[user_id] = self._generation.get(user_id, 0) + 1

    async def standing(self, user_id: str) -> Standing | None:
        now = self._clock()
        known = self._known.get(user_id)
        if known is not None and now - known[0] < self._ttl:
            return known[1]
        generation = self._generation.get(user_id, 0)
        self.reads += 1
        async with self._sessions() as db:
            row = (
                await db.execute(
                    select(
                        User.session_version, User.role, User.extension, User.is_active, User.must_change_password
                    ).where(User.id == user_id)
                )
            ).first()
        found = None
        if row is not None:
            try:
                found = Standing(user_id, int(row[0]), Role(row[1]), row[2], bool(row[3]), bool(row[4]))
            except ValueError:  # a role this code does not know: no session
                found = None
        if self._generation.get(user_id, 0) == generation:
            self._known[user_id] = (now, found)
        return found

    async def check(self, cookie: Mapping[str, Any]) -> Standing | None:
        """The standing of the cookie's user when the cookie is still good: same version, user still active."""
        user_id, version = cookie.get("user_id"), cookie.get(VERSION_KEY)
        if not isinstance(user_id, str) or not user_id or not isinstance(version, int):
            return None
        found = await self.standing(user_id)
        if found is None or not found.active or found.version != version:
            return None
        return found


def install_session_check(app: Quart, users: SignedInUsers) -> None:
    """Check the signed-in user before every request; a revoked cookie is replaced by an anonymous one."""
    app.extensions["signed_in_users"] = users

    @app.before_request
    async def _check_signed_in() -> None:
        g.standing = None
        if "user_id" not in session:
            return
        standing = await users.check(session)
        if standing is None:
            session.clear()
            return
        g.standing = standing


def current_standing() -> Standing | None:
    found = g.get("standing")
    return found if isinstance(found, Standing) else None


def current_actor() -> Actor | None:
    found = current_standing()
    return found.actor if found is not None else None


def signed_in_users(app: Quart | None = None) -> SignedInUsers:
    users: SignedInUsers = (app or current_app).extensions["signed_in_users"]
    return users


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


def roles_allowed(*roles: Role, api: bool = False) -> Callable[[F], F]:
    """Only these roles (admins always) may use the view. API views also need the CSRF header when they change."""

    def decorate(view: F) -> F:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            standing = current_standing()
            if standing is None:
                if api:
                    abort(401, "Sign in first.")
                return redirect(url_for("auth.login", next=request.path))
            if standing.must_change_password and request.endpoint not in ("auth.password", "auth.logout"):
                if api:
                    abort(403, "Change your one-time password first.")
                return redirect(url_for("auth.password"))
            if standing.role is not Role.ADMIN and standing.role not in roles:
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
