"""Satisfaction (CSAT) of a resolved ticket: one row per resolution — the request, its channel, the score."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.db import Base, new_id, utcnow

# pending: written at resolution, for the dispatcher; sent: the SMS is in the outbox; unsent: no SMS channel (no
# mobile, opted out, no sender) — an IVR survey may still answer; off: CSAT switched off; cancelled: reopened
# before the request went out; answered: the score is in.
CSAT_STATUSES = ("pending", "sent", "unsent", "off", "cancelled", "answered")
ANSWERABLE = ("pending", "sent", "unsent")


class TicketCsat(Base):
    __tablename__ = "ticket_csat"
    __table_args__ = (
        UniqueConstraint("ticket_id", "resolved_at"),  # once per resolution
        Index("ix_ticket_csat_status_requested", "status", "requested_at"),
        Index("ix_ticket_csat_number_status", "number", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    resolved_at: Mapped[datetime] = mapped_column()  # which resolution this is about
    status: Mapped[str] = mapped_column(String(16), default="pending")  # one of CSAT_STATUSES
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    number: Mapped[str | None] = mapped_column(String(20), default=None)  # the mobile the SMS went to (E.164)
    sms_id: Mapped[str | None] = mapped_column(ForeignKey("sms_messages.id", ondelete="SET NULL"), default=None)
    reason: Mapped[str | None] = mapped_column(String(200), default=None)  # why unsent/cancelled/off
    score: Mapped[int | None] = mapped_column(Integer, default=None)  # 1 (bad) to 5 (great)
    channel: Mapped[str | None] = mapped_column(String(8), default=None)  # sms | ivr: how the score came
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
    call_id: Mapped[str | None] = mapped_column(ForeignKey("call_logs.id", ondelete="SET NULL"), default=None)


class IntakeThrottle(Base):
    """Public web-form submissions per client address and hour (shared by every web worker, in the database)."""

    __tablename__ = "intake_throttles"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)  # address + hour window
    count: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(index=True)
