"""Webhook subscriptions (a receiver's URL, the events it wants, its signing secret) and the outbox of deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.db import Base, new_id, utcnow

# A delivery's life: written `pending` before anything is sent (due at `next_attempt_at`), `sending` while one
# worker holds it (its lease ends at `next_attempt_at`: a worker that died leaves it due again), `delivered` once
# the receiver answered 2xx (never sent again), `dead` when the retry window closed (an admin may replay it).
DELIVERY_STATUSES = ("pending", "sending", "delivered", "dead")


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)  # webhook event names, e.g. "ticket.created"
    secret: Mapped[str] = mapped_column(String(100))  # the HMAC key; the receiver has it too, so it is kept as is
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    max_in_flight: Mapped[int] = mapped_column(Integer, default=8)  # requests to this receiver at once
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one subscription. The id goes out as the delivery id header: the same on every attempt, so a
    receiver can drop a repeat."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # several processes may see the same event (the Redis bus): only the first writes its delivery
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_deliveries_subscription_status_next", "subscription_id", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_status_created", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(32))
    event_type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)  # the exact JSON sent (and signed)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    retry_until: Mapped[datetime] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


# the table itself, for the Core statements run for every delivery (written, claimed, marked): no ORM per row
DELIVERIES = cast(Table, WebhookDelivery.__table__)
