"""Webhook subscriptions (admins only, audited) and their deliveries: list, replay a dead letter, and write the
deliveries of events (the outbox rows, before anything is sent)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from crm_core.audit.service import record_audit
from crm_core.db import new_id, utcnow
from crm_core.errors import NotFound, ValidationFailed
from crm_core.inputs import check_text
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role
from crm_core.webhooks.catalog import EVENT_NAMES, WebhookEvent
from crm_core.webhooks.models import DELIVERIES, DELIVERY_STATUSES, WebhookDelivery, WebhookSubscription
from crm_core.webhooks.signing import new_secret
from crm_core.webhooks.urls import AddressPolicy, check_url

MAX_IN_FLIGHT = 64
DEFAULT_RETRY_WINDOW = timedelta(hours=24)


def _snapshot(subscription: WebhookSubscription) -> dict[str, Any]:
    """What the audit keeps of a subscription: never its secret."""
    return {
        "name": subscription.name,
        "url": subscription.url,
        "events": list(subscription.events),
        "active": subscription.active,
        "max_in_flight": subscription.max_in_flight,
    }


def check_events(events: Sequence[str]) -> list[str]:
    chosen = [e.strip() for e in events if e.strip()]
    unknown = [e for e in chosen if e not in EVENT_NAMES]
    if unknown:
        raise ValidationFailed(
            f"Unknown webhook event {unknown[0]!r}; choose from {', '.join(EVENT_NAMES)}.", field="events"
        )
    if not chosen:
        raise ValidationFailed("Choose at least one event.", field="events")
    return sorted(set(chosen), key=EVENT_NAMES.index)


def check_max_in_flight(value: int) -> int:
    if not 1 <= value <= MAX_IN_FLIGHT:
        raise ValidationFailed(f"At most 1 to {MAX_IN_FLIGHT} requests at once.", field="max_in_flight")
    return value


async def create_subscription(
    *,
    session: AsyncSession,
    actor: Actor,
    name: str,
    url: str,
    events: Sequence[str],
    policy: AddressPolicy,
    max_in_flight: int = 8,
    active: bool = True,
) -> WebhookSubscription:
    """A new subscription with a fresh secret (`.secret`): show it to the admin once, at creation."""
    require_role(actor, Role.ADMIN)
    name = check_text(name, field="name", max_length=100, required=True)
    chosen = check_events(events)
    max_in_flight = check_max_in_flight(max_in_flight)
    checked_url = await check_url(url, policy)
    now = utcnow()
    subscription = WebhookSubscription(
        name=name,
        url=checked_url,
        events=chosen,
        secret=new_secret(),
        active=active,
        max_in_flight=max_in_flight,
        created_by=actor.user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(subscription)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="webhook_subscription",
        entity_id=subscription.id,
        after=_snapshot(subscription),
    )
    return subscription


async def list_subscriptions(*, session: AsyncSession, actor: Actor) -> list[WebhookSubscription]:
    require_role(actor, Role.ADMIN)
    return list(await session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.created_at)))


async def get_subscription(*, session: AsyncSession, actor: Actor, subscription_id: str) -> WebhookSubscription:
    require_role(actor, Role.ADMIN)
    subscription = await session.get(WebhookSubscription, subscription_id)
    if subscription is None:
        raise NotFound("No such webhook subscription.", subscription_id=subscription_id)
    return subscription


async def update_subscription(
    *,
    session: AsyncSession,
    actor: Actor,
    subscription_id: str,
    policy: AddressPolicy,
    name: str | None = None,
    url: str | None = None,
    events: Sequence[str] | None = None,
    active: bool | None = None,
    max_in_flight: int | None = None,
) -> WebhookSubscription:
    subscription = await get_subscription(session=session, actor=actor, subscription_id=subscription_id)
    # validate everything, then change anything
    new_name = check_text(name, field="name", max_length=100, required=True) if name is not None else None
    chosen = check_events(events) if events is not None else None
    cap = check_max_in_flight(max_in_flight) if max_in_flight is not None else None
    checked_url = await check_url(url, policy) if url is not None else None
    before = _snapshot(subscription)
    if new_name is not None:
        subscription.name = new_name
    if chosen is not None:
        subscription.events = chosen
    if cap is not None:
        subscription.max_in_flight = cap
    if checked_url is not None:
        subscription.url = checked_url
    if active is not None:
        subscription.active = active
    after = _snapshot(subscription)
    if after != before:
        subscription.updated_at = utcnow()
        await session.flush()
        await record_audit(
            session=session,
            actor=actor.user_id,
            action="update",
            entity_type="webhook_subscription",
            entity_id=subscription.id,
            before=before,
            after=after,
        )
    return subscription


async def rotate_secret(*, session: AsyncSession, actor: Actor, subscription_id: str) -> WebhookSubscription:
    """A new secret; deliveries signed from now on use it (show it once, as at creation)."""
    subscription = await get_subscription(session=session, actor=actor, subscription_id=subscription_id)
    subscription.secret = new_secret()
    subscription.updated_at = utcnow()
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="webhook_subscription",
        entity_id=subscription.id,
        after={"secret": "rotated"},
    )
    return subscription


async def delete_subscription(*, session: AsyncSession, actor: Actor, subscription_id: str) -> None:
    """The subscription and its deliveries (pending ones are not sent)."""
    subscription = await get_subscription(session=session, actor=actor, subscription_id=subscription_id)
    before = _snapshot(subscription)
    await session.delete(subscription)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="delete",
        entity_type="webhook_subscription",
        entity_id=subscription_id,
        before=before,
    )


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: str
    subscription_id: str
    subscription_name: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None


async def list_deliveries(
    *,
    session: AsyncSession,
    actor: Actor,
    subscription_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
    before: tuple[datetime, str] | None = None,
) -> list[DeliveryRow]:
    """The newest deliveries first (of one subscription, in one status, when asked); `before` (created_at, id) of
    the last row of a page gives the next page."""
    require_role(actor, Role.ADMIN)
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(DELIVERY_STATUSES)}.", field="status")
    query = (
        select(
            WebhookDelivery.id,
            WebhookDelivery.subscription_id,
            WebhookSubscription.name.label("subscription_name"),
            WebhookDelivery.event_id,
            WebhookDelivery.event_type,
            WebhookDelivery.status,
            WebhookDelivery.attempts,
            WebhookDelivery.next_attempt_at,
            WebhookDelivery.last_status_code,
            WebhookDelivery.last_error,
            WebhookDelivery.created_at,
            WebhookDelivery.last_attempt_at,
            WebhookDelivery.delivered_at,
        )
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .limit(max(1, min(limit, 1000)))
    )
    if before is not None:
        at, last = before
        query = query.where(
            or_(
                WebhookDelivery.created_at < at,
                and_(WebhookDelivery.created_at == at, WebhookDelivery.id < last),
            )
        )
    if subscription_id is not None:
        query = query.where(WebhookDelivery.subscription_id == subscription_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return [DeliveryRow(**row._asdict()) for row in await session.execute(query)]


async def delivery_counts(*, session: AsyncSession, actor: Actor) -> dict[str, int]:
    require_role(actor, Role.ADMIN)
    rows = await session.execute(select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status))
    counts = dict.fromkeys(DELIVERY_STATUSES, 0)
    counts.update({status: int(count) for status, count in rows})
    return counts


async def replay_delivery(
    *, session: AsyncSession, actor: Actor, delivery_id: str, retry_window: timedelta = DEFAULT_RETRY_WINDOW
) -> WebhookDelivery:
    """A dead letter goes out again now, with a fresh retry window (same delivery id: the receiver may drop it if
    it had it after all)."""
    require_role(actor, Role.ADMIN)
    delivery = await session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None:
        raise NotFound("No such webhook delivery.", delivery_id=delivery_id)
    if delivery.status != "dead":
        raise ValidationFailed(
            f"Only dead letters can be replayed; this delivery is {delivery.status}.", field="delivery_id"
        )
    now = utcnow()
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.next_attempt_at = now
    delivery.retry_until = now + retry_window
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="webhook_delivery",
        entity_id=delivery.id,
        before={"status": "dead"},
        after={"status": "pending", "replayed": True},
    )
    return delivery


@dataclass(frozen=True, slots=True)
class Recorded:
    """A delivery row just written."""

    id: str
    subscription_id: str


# the active subscriptions and the events each wants: read for every batch of deliveries written
_WANTED = select(WebhookSubscription.id, WebhookSubscription.events).where(WebhookSubscription.active.is_(True))


async def record_deliveries(
    *,
    connection: AsyncConnection,
    events: Sequence[WebhookEvent],
    retry_window: timedelta = DEFAULT_RETRY_WINDOW,
    now: datetime | None = None,
) -> list[Recorded]:
    """One delivery per (active subscription that wants it, event): written before anything is sent. An event some
    other process already wrote is left alone (the Redis bus gives every process every event). Core statements on
    a connection, no ORM session: this runs for every batch of events the process publishes."""
    if not events:
        return []
    subscriptions = (await connection.execute(_WANTED)).all()
    when = now or utcnow()
    events = list({event.id: event for event in events}.values())
    rows: list[dict[str, Any]] = []
    for subscription_id, wanted in subscriptions:
        wanted_set = set(wanted or ())
        for event in events:
            if event.type in wanted_set:
                rows.append(
                    {
                        "id": new_id(),
                        "subscription_id": subscription_id,
                        "event_id": event.id,
                        "event_type": event.type,
                        "body": event.body,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": when,
                        "retry_until": when + retry_window,
                        "created_at": when,
                    }
                )
    if not rows:
        return []
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    # one statement, compiled once and cached, with the rows as parameters (SQLAlchemy batches them into multi-row
    # INSERTs itself): a `.values(rows)` statement is compiled again for every batch, which cost more than the insert
    statement = (
        insert(DELIVERIES)
        .on_conflict_do_nothing(index_elements=["subscription_id", "event_id"])
        .returning(DELIVERIES.c.id, DELIVERIES.c.subscription_id)
    )
    result = await connection.execute(statement, rows)
    return [Recorded(row[0], row[1]) for row in result]


async def mark_all_sending_due(*, session: AsyncSession, now: datetime | None = None) -> int:
    """For the one worker of a single process at start: every delivery a crash left `sending` is due now."""
    result: Any = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.status == "sending")
        .values(next_attempt_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)
