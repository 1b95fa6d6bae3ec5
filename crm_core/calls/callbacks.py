"""Callback requests: a caller asks to be called back instead of waiting; the dialer claims them when an agent of
the queue is free. Claiming uses SELECT … FOR UPDATE SKIP LOCKED on PostgreSQL, so several dialers never take the
same request."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.calls.models import CallbackRequest
from crm_core.customers.phones import normalize_phone
from crm_core.db import utcnow
from crm_core.errors import ValidationFailed

MAX_ATTEMPTS = 3


async def request_callback(
    *,
    session: AsyncSession,
    number: str,
    queue: str,
    region: str,
    customer_id: str | None = None,
    origin_linkedid: str | None = None,
) -> CallbackRequest:
    """Queue a callback; one pending request per number and queue (asking twice does not call twice)."""
    e164 = normalize_phone(number, region)
    if not queue:
        raise ValidationFailed("A callback needs a queue.", field="queue")
    existing = await session.scalar(
        select(CallbackRequest).where(
            CallbackRequest.number == e164, CallbackRequest.queue == queue, CallbackRequest.status == "pending"
        )
    )
    if existing is not None:
        return existing
    request = CallbackRequest(
        number=e164, queue=queue, customer_id=customer_id, origin_linkedid=origin_linkedid, status="pending"
    )
    session.add(request)
    await session.flush()
    return request


async def claim_next(
    *, session: AsyncSession, queue: str, agent: str, now: datetime | None = None
) -> CallbackRequest | None:
    """Take the oldest pending callback of `queue` for `agent` (locked, skipped by other dialers)."""
    now = now or utcnow()
    query = (
        select(CallbackRequest)
        .where(CallbackRequest.queue == queue, CallbackRequest.status == "pending")
        .order_by(CallbackRequest.requested_at)
        .limit(1)
    )
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    request = await session.scalar(query)
    if request is None:
        return None
    request.status = "dialing"
    request.agent = agent
    request.attempts += 1
    return request


async def finish_callback(*, session: AsyncSession, request_id: str, reached: bool) -> CallbackRequest:
    request = await session.get(CallbackRequest, request_id)
    if request is None:
        raise ValidationFailed("No such callback request.")
    if reached:
        request.status = "done"
        request.completed_at = utcnow()
    elif request.attempts >= MAX_ATTEMPTS:
        request.status = "failed"
        request.completed_at = utcnow()
    else:
        request.status = "pending"  # tried again later
    return request


async def pending_callbacks(*, session: AsyncSession, queue: str | None = None) -> list[CallbackRequest]:
    query = select(CallbackRequest).where(CallbackRequest.status == "pending").order_by(CallbackRequest.requested_at)
    if queue:
        query = query.where(CallbackRequest.queue == queue)
    return list(await session.scalars(query))


def stale(request: CallbackRequest, now: datetime, *, hours: int = 24) -> bool:
    return request.requested_at < now - timedelta(hours=hours)
