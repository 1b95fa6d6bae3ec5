"""Keyset pages that the REST API reads: calls, SMS messages and users, newest first, with an opaque cursor; each
with the role check of its domain (calls: supervisors; SMS and users: supervisors)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.calls.models import CallLog
from crm_core.errors import ValidationFailed
from crm_core.sms.models import SmsMessage
from crm_core.users.models import Role, User
from crm_core.users.service import Actor, require_role

MAX_LIMIT = 200
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(*values: Any) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The values of a cursor this API gave out, or ValidationFailed naming the cursor."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        values = None
    if not isinstance(values, list) or len(values) != arity or not all(isinstance(v, str | int) for v in values):
        raise ValidationFailed("The cursor is not one this API gave out.", field="cursor")
    return values


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit is 1 to {MAX_LIMIT}.", field="limit")


def _time(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValidationFailed("The cursor is not one this API gave out.", field="cursor") from None
    if parsed.tzinfo is None:
        raise ValidationFailed("The cursor is not one this API gave out.", field="cursor")
    return parsed


async def _newest_first(
    session: AsyncSession, query: Select[Any], at: Any, key: Any, cursor: str | None, limit: int
) -> tuple[list[Any], str | None]:
    _check_limit(limit)
    if cursor:
        when, last = decode_cursor(cursor, 2)
        query = query.where(or_(at < _time(when), and_(at == _time(when), key < str(last))))
    rows = list(await session.scalars(query.order_by(at.desc(), key.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    after = encode_cursor(getattr(rows[-1], at.key), getattr(rows[-1], key.key)) if more and rows else None
    return rows, after


async def list_calls(
    *,
    session: AsyncSession,
    actor: Actor,
    cursor: str | None = None,
    limit: int = 50,
    customer_id: str | None = None,
    direction: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[CallLog]:
    """Call logs, newest offered first: every call, so supervisors (and tokens acting as one) only."""
    require_role(actor, Role.SUPERVISOR)
    query = select(CallLog)
    if customer_id:
        query = query.where(CallLog.customer_id == customer_id)
    if direction:
        query = query.where(CallLog.direction == direction)
    if outcome:
        query = query.where(CallLog.outcome == outcome)
    if since:
        query = query.where(CallLog.offered_at >= since)
    if until:
        query = query.where(CallLog.offered_at < until)
    rows, after = await _newest_first(session, query, CallLog.offered_at, CallLog.id, cursor, limit)
    return Page(rows, after)


async def list_sms(
    *,
    session: AsyncSession,
    actor: Actor,
    cursor: str | None = None,
    limit: int = 50,
    customer_id: str | None = None,
    direction: str | None = None,
    status: str | None = None,
) -> Page[SmsMessage]:
    require_role(actor, Role.SUPERVISOR)
    query = select(SmsMessage)
    if customer_id:
        query = query.where(SmsMessage.customer_id == customer_id)
    if direction:
        query = query.where(SmsMessage.direction == direction)
    if status:
        query = query.where(SmsMessage.status == status)
    rows, after = await _newest_first(session, query, SmsMessage.created_at, SmsMessage.id, cursor, limit)
    return Page(rows, after)


async def list_users(
    *, session: AsyncSession, actor: Actor, cursor: str | None = None, limit: int = 50, role: str | None = None
) -> Page[User]:
    require_role(actor, Role.SUPERVISOR)
    query = select(User)
    if role:
        query = query.where(User.role == role)
    rows, after = await _newest_first(session, query, User.created_at, User.id, cursor, limit)
    return Page(rows, after)


async def read_user(*, session: AsyncSession, actor: Actor, user_id: str) -> User | None:
    require_role(actor, Role.SUPERVISOR)
    return await session.get(User, user_id)
