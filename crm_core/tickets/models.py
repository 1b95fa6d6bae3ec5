"""Tickets: subject, status, priority, assignee, customer, SLA timestamps and links to calls and SMS."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.db import Base, new_id, utcnow


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (Index("ix_tickets_customer_status", "customer_id", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # The number a caller reads out on the phone ("ticket 1042").
    number: Mapped[int] = mapped_column(Integer, unique=True)
    subject: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")  # open|pending|resolved|closed
    priority: Mapped[str] = mapped_column(String(16), default="normal")  # low|normal|high|urgent
    category: Mapped[str | None] = mapped_column(String(64), default=None)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), default=None)
    assignee_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    created_by: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    first_response_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)


class TicketLink(Base):
    """Links a ticket to a call log or an SMS message."""

    __tablename__ = "ticket_links"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    call_id: Mapped[str | None] = mapped_column(
        ForeignKey("call_logs.id", ondelete="CASCADE"), default=None, index=True
    )
    sms_id: Mapped[str | None] = mapped_column(
        ForeignKey("sms_messages.id", ondelete="CASCADE"), default=None, index=True
    )
