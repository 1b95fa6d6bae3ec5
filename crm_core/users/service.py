"""Users: creation, password checks (argon2), role and standing changes that end sessions, and the role checks
every service calls."""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.db import record_event, utcnow
from crm_core.errors import NotFound, PermissionDenied, ValidationFailed
from crm_core.users.errors import ExtensionTaken, InvalidCredentials, UsernameTaken, WeakPassword
from crm_core.users.events import RevokeReason, UserSessionsRevoked
from crm_core.users.models import Role, User

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so a wrong username costs the same time as a wrong password.
    Made at the first such sign-in, not at import: every process and `crm` command would pay an argon2 hash."""
    return str(_hasher.hash("not-a-real-password"))


MIN_PASSWORD_LENGTH = 10


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking: carried into every service call so permissions are checked where the work is done."""

    user_id: str | None
    role: Role
    extension: str | None = None

    @classmethod
    def of(cls, user: User) -> Actor:
        return cls(user_id=user.id, role=Role(user.role), extension=user.extension)


SYSTEM = Actor(user_id=None, role=Role.ADMIN)


def require_role(actor: Actor, *roles: Role) -> None:
    """Raise PermissionDenied unless the actor has one of `roles` (admins may do everything)."""
    if actor.role is Role.ADMIN or actor.role in roles:
        return
    allowed = ", ".join(r.value for r in roles)
    raise PermissionDenied(f"This needs the role {allowed}; you are {actor.role.value}.", role=actor.role.value)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")


def generate_password() -> str:
    return secrets.token_urlsafe(12)


_EXTENSION = re.compile(r"^[0-9A-Za-z_]{1,20}$")
_QUEUE = re.compile(r"^[0-9A-Za-z_-]{1,40}$")


def check_extension(extension: str | None) -> str | None:
    """An extension and queue names travel to the PBX: the characters Asterisk dialplans name devices with."""
    if extension and not _EXTENSION.match(extension):
        raise ValidationFailed("An extension is 1 to 20 letters, digits or _.", field="extension")
    return extension or None


def check_queues(queues: list[str] | None) -> list[str]:
    names = [q.strip() for q in queues or [] if q.strip()]
    for name in names:
        if not _QUEUE.match(name):
            raise ValidationFailed(f"{name[:40]!r} is not a queue name (letters, digits, _ and -).", field="queues")
    return list(dict.fromkeys(names))


async def create_user(
    *,
    session: AsyncSession,
    actor: Actor,
    username: str,
    password: str,
    role: Role,
    display_name: str | None = None,
    extension: str | None = None,
    queues: list[str] | None = None,
    must_change_password: bool = False,
) -> User:
    require_role(actor, Role.ADMIN)
    username = username.strip().lower()
    if not username or not username.replace(".", "").replace("_", "").replace("-", "").isalnum():
        raise ValidationFailed("A username is letters, digits, '.', '_' or '-'.", username=username)
    check_password_strength(password)
    extension, queues = check_extension(extension), check_queues(queues)
    if await session.scalar(select(User.id).where(User.username == username)):
        raise UsernameTaken(f"The username {username!r} is taken.", username=username)
    if extension and await session.scalar(select(User.id).where(User.extension == extension)):
        raise ExtensionTaken(f"Extension {extension} already belongs to another user.", extension=extension)
    user = User(
        username=username,
        display_name=display_name or username,
        role=role.value,
        password_hash=hash_password(password),
        extension=extension or None,
        queues=list(queues or []),
        must_change_password=must_change_password,
    )
    session.add(user)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="user",
        entity_id=user.id,
        after={"username": username, "role": role.value, "extension": extension},
    )
    return user


def password_matches(user: User | None, password: str) -> bool:
    """Whether `password` is the user's; an unknown user costs the same time as a wrong password."""
    try:
        _hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return user is not None


async def authenticate(*, session: AsyncSession, username: str, password: str) -> User:
    user = await session.scalar(select(User).where(User.username == username.strip().lower()))
    if not password_matches(user, password) or user is None or not user.is_active:
        raise InvalidCredentials("Wrong username or password.")
    refresh_hash(user, password)
    return user


def refresh_hash(user: User, password: str) -> None:
    """After a right password: re-hash it when the hasher's parameters have grown since it was stored."""
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)


def _end_sessions(session: AsyncSession, user: User, reason: RevokeReason) -> None:
    """Every cookie the user holds carries the old version and stops opening anything; live sockets are closed
    when the event goes out after commit."""
    user.session_version = (user.session_version or 0) + 1
    record_event(session, UserSessionsRevoked(user_id=user.id, reason=reason, revoked_at=utcnow()))


def _own_or_admin(actor: Actor, user_id: str) -> bool:
    """True when the actor acts on their own account; anyone else's needs an admin."""
    if actor.user_id == user_id:
        return True
    require_role(actor, Role.ADMIN)
    return False


async def set_password(
    *, session: AsyncSession, actor: Actor, user_id: str, password: str, current_password: str | None = None
) -> User:
    """Change one's own password (the current one is asked, the one-time one included) or, as an admin, set
    someone else's: that one is one-time, to be changed at the next sign-in. Either way every session ends."""
    own = _own_or_admin(actor, user_id)
    user = await get_user(session=session, user_id=user_id)
    if own:
        if not current_password or not password_matches(user, current_password):
            raise InvalidCredentials("Your current password is wrong.", field="current_password")
        if password == current_password:
            raise WeakPassword("Choose a password other than the current one.", field="password")
    check_password_strength(password)
    user.password_hash = hash_password(password)
    user.must_change_password = not own
    _end_sessions(session, user, RevokeReason.PASSWORD_CHANGED)
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="user",
        entity_id=user_id,
        after={"password": "changed" if own else "reset"},
    )
    return user


async def sign_out(*, session: AsyncSession, actor: Actor, user_id: str) -> None:
    """End every session of the user (signing out ends them on every device, not only this browser)."""
    _own_or_admin(actor, user_id)
    user = await get_user(session=session, user_id=user_id)
    _end_sessions(session, user, RevokeReason.SIGNED_OUT)
    await record_audit(session=session, actor=actor.user_id, action="logout", entity_type="user", entity_id=user_id)


async def deactivate_user(*, session: AsyncSession, actor: Actor, user_id: str) -> User:
    require_role(actor, Role.ADMIN)
    if actor.user_id == user_id:
        raise PermissionDenied("Another admin must deactivate your account.", user_id=user_id)
    return await _set_active(session=session, actor=actor, user_id=user_id, active=False)


async def activate_user(*, session: AsyncSession, actor: Actor, user_id: str) -> User:
    return await _set_active(session=session, actor=actor, user_id=user_id, active=True)


async def _set_active(*, session: AsyncSession, actor: Actor, user_id: str, active: bool) -> User:
    """Switch a user on or off (admins only); a user switched off is signed out everywhere. Audited when it changes."""
    require_role(actor, Role.ADMIN)
    user = await get_user(session=session, user_id=user_id)
    if user.is_active != active:
        user.is_active = active
        if not active:
            _end_sessions(session, user, RevokeReason.DEACTIVATED)
        await record_audit(
            session=session,
            actor=actor.user_id,
            action="update",
            entity_type="user",
            entity_id=user_id,
            before={"is_active": not active},
            after={"is_active": active},
        )
    return user


async def change_role(
    *,
    session: AsyncSession,
    actor: Actor,
    user_id: str,
    role: Role,
    extension: str | None,
    queues: list[str] | None = None,
) -> User:
    """Give a user another role, extension or queues; their sessions end, so they sign in as what they now are."""
    require_role(actor, Role.ADMIN)
    if actor.user_id == user_id:
        raise PermissionDenied("Another admin must change your role.", user_id=user_id)
    user = await get_user(session=session, user_id=user_id)
    extension = check_extension(extension)
    queues = check_queues(queues) if queues is not None else None
    if (
        extension
        and extension != user.extension
        and await session.scalar(select(User.id).where(User.extension == extension))
    ):
        raise ExtensionTaken(f"Extension {extension} already belongs to another user.", extension=extension)
    before: dict[str, Any] = {"role": user.role, "extension": user.extension, "queues": list(user.queues or [])}
    after: dict[str, Any] = {
        "role": role.value,
        "extension": extension,
        "queues": list(queues) if queues is not None else before["queues"],
    }
    if after == before:
        return user
    user.role, user.extension, user.queues = role.value, extension, list(after["queues"])
    _end_sessions(session, user, RevokeReason.ROLE_CHANGED)
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="user",
        entity_id=user_id,
        before=before,
        after=after,
    )
    return user


async def get_user(*, session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.", user_id=user_id)
    return user


async def get_user_by_extension(*, session: AsyncSession, extension: str) -> User | None:
    return await session.scalar(select(User).where(User.extension == extension))


async def count_users(*, session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(User)) or 0)
