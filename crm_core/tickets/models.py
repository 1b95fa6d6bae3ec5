"""Tickets: subject, status, priority, assignee and team, customer, SLA timestamps, the conversation, links to calls
and SMS, watchers, tags, and where a merged duplicate went."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.db import Base, new_id, utcnow

# "pending" is pending the customer; the statuses that pause SLA clocks are set per policy.
STATUSES = ("new", "open", "pending", "on_hold", "resolved", "closed")
OPEN_STATUSES = ("new", "open", "pending", "on_hold")
CLOSED_STATUSES = ("resolved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
MESSAGE_KINDS = ("reply", "note", "customer")
# Spelled out as literals (not bound parameters) so the planner matches the partial index of open tickets.
OPEN_CONDITION = "status IN ('new', 'open', 'pending', 'on_hold')"


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_customer_status", "customer_id", "status"),
        # the desk's list: open tickets newest first (a partial index, so closed tickets never weigh on it)
        Index(
            "ix_tickets_open_created",
            "created_at",
            "number",
            postgresql_where=text(OPEN_CONDITION),
            sqlite_where=text(OPEN_CONDITION),
        ),
        # the list filtered by priority, newest first (the desk's commonest filter): one partial index walk
        Index(
            "ix_tickets_open_priority_created",
            "priority",
            "created_at",
            "number",
            postgresql_where=text(OPEN_CONDITION),
            sqlite_where=text(OPEN_CONDITION),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # The number a caller reads out on the phone ("ticket 1042").
    number: Mapped[int] = mapped_column(Integer, unique=True)
    subject: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")  # one of STATUSES
    priority: Mapped[str] = mapped_column(String(16), default="normal")  # low|normal|high|urgent
    category: Mapped[str | None] = mapped_column(String(64), default=None)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), default=None)
    assignee_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    # the team (a queue's name) whose calendar counts the SLA clocks
    team: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    created_by: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    due_at: Mapped[datetime | None] = mapped_column(default=None)  # the resolution clock's due time
    first_response_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    # a duplicate merged into another ticket: closed, and its page leads to the survivor
    # (a plain indexed column: see migration 0017 for why there is no foreign key)
    merged_into_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)


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


class TicketMessage(Base):
    """One entry of a ticket's conversation: an agent's reply the customer sees, an internal note, or what the
    customer wrote."""

    __tablename__ = "ticket_messages"
    __table_args__ = (Index("ix_ticket_messages_ticket_created", "ticket_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # one of MESSAGE_KINDS
    author_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TicketWatcher(Base):
    """Someone who follows a ticket (besides its assignee): they see its changes live."""

    __tablename__ = "ticket_watchers"

    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    added_by: Mapped[str | None] = mapped_column(String(32), default=None)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


TAG_LENGTH = 48


class TicketTag(Base):
    """A label on a ticket ("billing", "outage-2026-12"), lower case; the list filters by it."""

    __tablename__ = "ticket_tags"
    __table_args__ = (Index("ix_ticket_tags_tag", "tag", "ticket_id"),)

    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(TAG_LENGTH), primary_key=True)
