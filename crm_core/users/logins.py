"""Signing in: failed attempts throttled per account and per client address (growing delays, then a lock an admin
can lift), kept in the database so that every web worker sees the same counts, and every outcome audited.

A sign-in is two transactions, so that the slow password check holds no lock:
`begin_sign_in` refuses a throttled attempt and, for the account, counts the attempt as a failure *before* the
check, in one atomic UPDATE that only passes when no delay or lock is running (so parallel guesses cannot slip past
the count); `finish_sign_in` checks the password, then forgets the account's failures on success or counts the
address's failure. The address is counted after the check, not before: a call center signs in behind one address,
and a shift's agents signing in at once must not look like failures of that address.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.users.errors import SignInThrottled
from crm_core.users.models import LoginThrottle, Role, ThrottleScope, User
from crm_core.users.service import Actor, get_user, password_matches, refresh_hash, require_role

log = logging.getLogger(__name__)
KEY_LENGTH = 128


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """`free_failures` failures in a row cost nothing; each further one makes the next attempt wait twice as long
    (from `first_delay` up to `max_delay`); `lock_after` failures lock for `lock_for`. Failures older than `window`
    are forgotten."""

    free_failures: int
    lock_after: int
    lock_for: timedelta
    window: timedelta
    first_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(seconds=60)

    def delay_after(self, failures: int) -> timedelta | None:
        if failures < self.free_failures:
            return None
        delay = self.first_delay
        for _ in range(failures - self.free_failures):
            if delay >= self.max_delay:
                break
            delay *= 2
        return min(delay, self.max_delay)


ACCOUNT_POLICY = ThrottlePolicy(
    free_failures=5, lock_after=10, lock_for=timedelta(minutes=15), window=timedelta(minutes=15)
)
# Lenient: many agents share one public address, and one of them mistyping must not slow the others down.
ADDRESS_POLICY = ThrottlePolicy(
    free_failures=20,
    lock_after=100,
    lock_for=timedelta(minutes=15),
    window=timedelta(minutes=15),
    max_delay=timedelta(seconds=30),
)


def account_key(username: str) -> str:
    return username.strip().lower()[:KEY_LENGTH]


def _address_key(address: str | None) -> str:
    return (address or "unknown")[:KEY_LENGTH]


def _at(value: datetime) -> ColumnElement[Any]:
    return literal(value, LoginThrottle.retry_at.type)


def _counted(policy: ThrottlePolicy, now: datetime) -> dict[str, ColumnElement[Any]]:
    """The SET clause of one more failure, computed by the database from the row as it is at that moment."""
    t = LoginThrottle
    forgotten = or_(t.last_failure_at.is_(None), t.last_failure_at <= now - policy.window)
    failures = case((forgotten, 1), else_=t.failures + 1)
    delays: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = []
    count = policy.free_failures
    while (delay := policy.delay_after(count)) is not None and delay < policy.max_delay:
        delays.append((failures == count, _at(now + delay)))
        count += 1
    delays.append((failures >= policy.free_failures, _at(now + policy.max_delay)))
    return {
        "failures": failures,
        "last_failure_at": _at(now),
        "retry_at": case(*delays, else_=None),
        "locked_until": case((failures >= policy.lock_after, _at(now + policy.lock_for)), else_=None),
    }


def _open(now: datetime) -> ColumnElement[bool]:
    t = LoginThrottle
    return and_(
        or_(t.retry_at.is_(None), t.retry_at <= now),
        or_(t.locked_until.is_(None), t.locked_until <= now),
    )


async def _ensure_row(session: AsyncSession, scope: ThrottleScope, key: str) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(insert(LoginThrottle).values(scope=scope.value, key=key, failures=0).on_conflict_do_nothing())


async def _throttled(session: AsyncSession, scope: ThrottleScope, key: str, now: datetime) -> SignInThrottled | None:
    row = await session.get(LoginThrottle, (scope.value, key), populate_existing=True)
    if row is None:
        return None
    until = max((t for t in (row.retry_at, row.locked_until) if t is not None and t > now), default=None)
    if until is None:
        return None
    return SignInThrottled(max(1, math.ceil((until - now).total_seconds())))


async def begin_sign_in(
    *,
    session: AsyncSession,
    username: str,
    address: str | None,
    now: datetime,
    account_policy: ThrottlePolicy = ACCOUNT_POLICY,
) -> None:
    """Raise SignInThrottled while the address or the account must wait; otherwise count this attempt against the
    account (finish_sign_in takes it back if the password was right)."""
    refused = await _throttled(session, ThrottleScope.ADDRESS, _address_key(address), now)
    if refused is None:
        key = account_key(username)
        await _ensure_row(session, ThrottleScope.ACCOUNT, key)
        claimed = await session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.scope == ThrottleScope.ACCOUNT.value, LoginThrottle.key == key, _open(now))
            .values(**_counted(account_policy, now))
            .returning(LoginThrottle.failures)
        )
        if claimed.first() is not None:
            return
        refused = await _throttled(session, ThrottleScope.ACCOUNT, key, now) or SignInThrottled(1)
    log.warning("sign-in refused for %r from %s: %s", username[:64], address, refused.message)
    raise refused


async def finish_sign_in(
    *,
    session: AsyncSession,
    username: str,
    password: str,
    address: str | None,
    now: datetime,
    address_policy: ThrottlePolicy = ADDRESS_POLICY,
) -> User | None:
    """Check the password after begin_sign_in let the attempt through: the user, or None when it was wrong
    (or the account is deactivated). Audited either way, never with the password."""
    tried = username.strip().lower()
    user = await session.scalar(select(User).where(User.username == tried))
    right = password_matches(user, password)
    details = {"username": tried[:64], "address": address}
    if user is not None and right and user.is_active:
        refresh_hash(user, password)
        await forget_failures(session=session, username=username)
        await record_audit(
            session=session,
            actor=user.id,
            action="login",
            entity_type="user",
            entity_id=user.id,
            after={**details, "outcome": "succeeded"},
        )
        return user
    key = _address_key(address)
    await _ensure_row(session, ThrottleScope.ADDRESS, key)
    await session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.scope == ThrottleScope.ADDRESS.value, LoginThrottle.key == key)
        .values(**_counted(address_policy, now))
    )
    await _forget_old(session, now, max(ACCOUNT_POLICY.window, address_policy.window))
    reason = "unknown_user" if user is None else ("wrong_password" if not right else "deactivated")
    await record_audit(
        session=session,
        actor=None,
        action="login",
        entity_type="user" if user is not None else "username",
        entity_id=user.id if user is not None else tried[:64],
        after={**details, "outcome": "failed", "reason": reason},
    )
    return None


async def forget_failures(*, session: AsyncSession, username: str) -> None:
    """The account's password was given right (a sign-in, or the current password when changing it)."""
    await session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.scope == ThrottleScope.ACCOUNT.value, LoginThrottle.key == account_key(username)
        )
    )


async def _forget_old(session: AsyncSession, now: datetime, window: timedelta) -> None:
    """Rows of failures long past (so that guessed usernames do not pile up)."""
    t = LoginThrottle
    await session.execute(
        delete(t).where(t.last_failure_at < now - window, or_(t.locked_until.is_(None), t.locked_until <= now))
    )


async def unlock_user(*, session: AsyncSession, actor: Actor, user_id: str) -> bool:
    """An admin lifts the delays and lock on a user's sign-ins; True when there was one to lift."""
    require_role(actor, Role.ADMIN)
    user = await get_user(session=session, user_id=user_id)
    lifted = await session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.scope == ThrottleScope.ACCOUNT.value, LoginThrottle.key == account_key(user.username)
        )
    )
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="user",
        entity_id=user.id,
        after={"sign_in_lock": "lifted"},
    )
    return bool(getattr(lifted, "rowcount", 0))


async def unlock_address(*, session: AsyncSession, actor: Actor, address: str) -> bool:
    """An admin lifts the delays and lock on sign-ins from one client address."""
    require_role(actor, Role.ADMIN)
    lifted = await session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.scope == ThrottleScope.ADDRESS.value, LoginThrottle.key == _address_key(address)
        )
    )
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="address",
        entity_id=_address_key(address)[:64],
        after={"sign_in_lock": "lifted"},
    )
    return bool(getattr(lifted, "rowcount", 0))
