"""Knowledge-base solutions (draft or published, with who edited them and when) and their links to tickets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.db import Base, new_id, utcnow

SOLUTION_STATUSES = ("draft", "published")


class KbSolution(Base):
    __tablename__ = "kb_solutions"
    __table_args__ = (Index("ix_kb_solutions_status_updated", "status", "updated_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)  # plain text, shown escaped (line breaks kept)
    tags: Mapped[str] = mapped_column(String(500), default="")  # lower-case words, comma-separated
    status: Mapped[str] = mapped_column(String(16), default="draft")  # one of SOLUTION_STATUSES
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    # SQLite: the FTS5 row of this solution (set by a trigger; rowids may be renumbered by VACUUM, this is not)
    search_key: Mapped[int | None] = mapped_column(Integer, default=None, unique=True)


class KbTicketSolution(Base):
    """A solution linked to a ticket by an agent, and whether (and how) it was sent to the customer."""

    __tablename__ = "kb_ticket_solutions"
    __table_args__ = (UniqueConstraint("ticket_id", "solution_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    solution_id: Mapped[str] = mapped_column(ForeignKey("kb_solutions.id", ondelete="CASCADE"), index=True)
    linked_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    sent_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    message_id: Mapped[str | None] = mapped_column(
        ForeignKey("ticket_messages.id", ondelete="SET NULL"), default=None
    )  # the customer-visible reply
    sms_id: Mapped[str | None] = mapped_column(ForeignKey("sms_messages.id", ondelete="SET NULL"), default=None)
