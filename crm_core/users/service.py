"""Users: creation, password checks (argon2), and the role checks every service calls."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.errors import NotFound, PermissionDenied, ValidationFailed
from crm_core.users.errors import ExtensionTaken, InvalidCredentials, UsernameTaken, WeakPassword
from crm_core.users.models import Role, User

_hasher = PasswordHasher()
# Verified against when the username is unknown, so a wrong username costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
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


async def authenticate(*, session: AsyncSession, username: str, password: str) -> User:
    user = await session.scalar(select(User).where(User.username == username.strip().lower()))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        raise InvalidCredentials("Wrong username or password.") from None
    if user is None or not user.is_active:
        raise InvalidCredentials("Wrong username or password.")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


async def set_password(*, session: AsyncSession, actor: Actor, user_id: str, password: str) -> None:
    if actor.user_id != user_id:
        require_role(actor, Role.ADMIN)
    check_password_strength(password)
    user = await get_user(session=session, user_id=user_id)
    user.password_hash = hash_password(password)
    user.must_change_password = False
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="user",
        entity_id=user_id,
        after={"password": "changed"},
    )


async def get_user(*, session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.", user_id=user_id)
    return user


async def get_user_by_extension(*, session: AsyncSession, extension: str) -> User | None:
    return await session.scalar(select(User).where(User.extension == extension))


async def count_users(*, session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(User)) or 0)
