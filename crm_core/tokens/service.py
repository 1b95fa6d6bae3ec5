"""API tokens: created and revoked by admins, shown once, stored as a SHA-256 hash, scoped; each use is audited
under the token's name. A token acts as a service principal: a supervisor-level actor limited by its scopes."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.db import utcnow
from crm_core.errors import Conflict, NotFound, ValidationFailed
from crm_core.tokens.errors import InvalidScopes, InvalidToken, MissingScope
from crm_core.tokens.models import ApiToken
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

TOKEN_PREFIX = "crm_"  # noqa: S105 (not a secret: the prefix) recognisable in a leaked config file or a secret scanner's rules
SHOWN_PREFIX = 12  # "crm_" and 8 characters of the secret: enough to tell tokens apart, far too few to guess with
SECRET_BYTES = 32
DEFAULT_RATE_PER_MINUTE = 600
MAX_RATE_PER_MINUTE = 60_000
SCOPES: dict[str, str] = {
    "customers:read": "search and read customers",
    "customers:write": "create, update and merge customers",
    "calls:read": "list and read call logs and their recording links",
    "tickets:read": "list and read tickets",
    "tickets:write": "create and update tickets",
    "sms:read": "list SMS messages",
    "sms:write": "send SMS",
    "users:read": "list and read users",
    "webhooks:admin": "manage outgoing webhook subscriptions",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
# A token acts with this role in the services (their role and ownership checks still apply); its scopes narrow it.
TOKEN_ROLE = Role.SUPERVISOR
_USE_ACTION = {"GET": "read", "HEAD": "read", "POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}


@dataclass(frozen=True, slots=True)
class TokenPrincipal:
    """Who is calling the API: a token, by id and name, with what it may do."""

    token_id: str
    name: str
    scopes: frozenset[str]
    rate_per_minute: int

    @property
    def actor(self) -> Actor:
        return Actor(user_id=None, role=TOKEN_ROLE)

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise MissingScope(f"This token lacks the scope {scope}.", scope=scope)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def check_scopes(scopes: Iterable[str]) -> list[str]:
    wanted = sorted({s.strip() for s in scopes if s.strip()})
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown:
        raise InvalidScopes(f"Unknown scope {unknown[0][:40]!r}; known: {', '.join(SCOPES)}.", field="scopes")
    if not wanted:
        raise InvalidScopes("Give the token at least one scope.", field="scopes")
    return wanted


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.match(name):
        raise ValidationFailed(
            "A token name is 1 to 64 letters, digits, spaces, dots, dashes or underscores.", field="name"
        )
    return name


async def create_token(
    *,
    session: AsyncSession,
    actor: Actor,
    name: str,
    scopes: Iterable[str],
    rate_per_minute: int = DEFAULT_RATE_PER_MINUTE,
) -> tuple[ApiToken, str]:
    """A new token and its secret. The secret is returned here once and never stored: only its hash is."""
    require_role(actor, Role.ADMIN)
    name = check_name(name)
    checked = check_scopes(scopes)
    if not 1 <= rate_per_minute <= MAX_RATE_PER_MINUTE:
        raise ValidationFailed(f"The rate is 1 to {MAX_RATE_PER_MINUTE} requests a minute.", field="rate_per_minute")
    if await session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise Conflict(f"A token named {name!r} exists already.", field="name")
    secret = new_secret()
    token = ApiToken(
        name=name,
        prefix=secret[:SHOWN_PREFIX],
        secret_hash=hash_secret(secret),
        scopes=checked,
        rate_per_minute=rate_per_minute,
        created_by=actor.user_id,
    )
    session.add(token)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="api_token",
        entity_id=token.id,
        after={"name": name, "scopes": checked, "rate_per_minute": rate_per_minute, "prefix": token.prefix},
    )
    return token, secret


async def revoke_token(*, session: AsyncSession, actor: Actor, token_id: str) -> ApiToken:
    """Revoke a token: its next request is refused, in every worker (each request reads the token row)."""
    require_role(actor, Role.ADMIN)
    token = await session.get(ApiToken, token_id)
    if token is None:
        raise NotFound("No such token.", token_id=token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        await record_audit(
            session=session,
            actor=actor.user_id,
            action="update",
            entity_type="api_token",
            entity_id=token.id,
            before={"revoked": False},
            after={"name": token.name, "revoked": True},
        )
    return token


async def list_tokens(*, session: AsyncSession, actor: Actor) -> list[ApiToken]:
    require_role(actor, Role.ADMIN)
    return list(await session.scalars(select(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.name)))


async def authenticate_token(*, session: AsyncSession, secret: str | None) -> TokenPrincipal:
    """The principal of a presented secret, or InvalidToken (unknown, malformed and revoked answered alike)."""
    if not secret or not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        raise InvalidToken("Send a valid API token: Authorization: Bearer crm_….")
    row = (
        await session.execute(
            select(ApiToken.id, ApiToken.name, ApiToken.scopes, ApiToken.rate_per_minute).where(
                ApiToken.secret_hash == hash_secret(secret), ApiToken.revoked_at.is_(None)
            )
        )
    ).first()
    if row is None:
        raise InvalidToken("Send a valid API token: Authorization: Bearer crm_….")
    return TokenPrincipal(
        token_id=row[0], name=row[1], scopes=frozenset(str(s) for s in row[2] or ()), rate_per_minute=int(row[3])
    )


async def record_token_use(
    *, session: AsyncSession, principal: TokenPrincipal, method: str, path: str, status: int
) -> None:
    """One audit row per use, under the token's name (refused and failed uses too), and the token's last use."""
    await record_audit(
        session=session,
        actor=None,
        action=_USE_ACTION.get(method, "read"),
        entity_type="api_token",
        entity_id=principal.token_id,
        after={"token": principal.name, "method": method, "path": path[:300], "status": status},
    )
    await session.execute(update(ApiToken).where(ApiToken.id == principal.token_id).values(last_used_at=utcnow()))
