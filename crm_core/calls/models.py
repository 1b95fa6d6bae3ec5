"""Call logs keyed by the PBX's Linkedid, with their legs (who talked when), dispositions and callbacks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_core.db import Base, new_id, utcnow


class CallLog(Base):
    __tablename__ = "call_logs"
    __table_args__ = (
        Index("ix_call_logs_customer_offered", "customer_id", "offered_at"),
        Index("ix_call_logs_queue_offered", "queue", "offered_at"),
        Index("ix_call_logs_agent_offered", "agent", "offered_at"),
        Index("ix_call_logs_outcome_offered", "outcome", "offered_at"),  # missed calls to follow up
        Index("ix_call_logs_ended_at", "ended_at"),  # wrap-ups still to save
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    linkedid: Mapped[str] = mapped_column(String(64), unique=True)
    direction: Mapped[str] = mapped_column(String(16))
    caller_number: Mapped[str] = mapped_column(String(40), default="")
    caller_name: Mapped[str] = mapped_column(String(200), default="")
    callee_number: Mapped[str] = mapped_column(String(40), default="")
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), default=None)
    queue: Mapped[str | None] = mapped_column(String(64), default=None)
    agent: Mapped[str | None] = mapped_column(String(32), default=None)  # extension that took the call
    offered_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    wait_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    talk_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    hold_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # answered | abandoned | missed | voicemail | failed; None while the call is live.
    outcome: Mapped[str | None] = mapped_column(String(16), default=None)
    hangup_cause: Mapped[int | None] = mapped_column(Integer, default=None)
    disposition_code: Mapped[str | None] = mapped_column(String(32), default=None)
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    recording_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    ivr_vars: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    survey_score: Mapped[int | None] = mapped_column(Integer, default=None)
    transferred: Mapped[bool] = mapped_column(Boolean, default=False)
    closed_at_resync: Mapped[bool] = mapped_column(Boolean, default=False)
    wrapped_up_by: Mapped[str | None] = mapped_column(String(32), default=None)

    legs: Mapped[list[CallLeg]] = relationship(
        back_populates="call", cascade="all, delete-orphan", lazy="selectin", order_by="CallLeg.seq"
    )


class CallLeg(Base):
    """One agent leg of a call: rung, maybe answered, ended. Keyed by (call, channel) so replays never double."""

    __tablename__ = "call_legs"
    __table_args__ = (UniqueConstraint("call_id", "channel", name="uq_call_legs_call_channel"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    call_id: Mapped[str] = mapped_column(ForeignKey("call_logs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    agent: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(128))
    queue: Mapped[str | None] = mapped_column(String(64), default=None)
    rang_at: Mapped[datetime | None] = mapped_column(default=None)
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)

    call: Mapped[CallLog] = relationship(back_populates="legs")


class Disposition(Base):
    """A wrap-up code agents pick at the end of a call (e.g. SOLVED, FOLLOWUP, WRONGNUMBER)."""

    __tablename__ = "dispositions"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class CallbackRequest(Base):
    """A caller asked to be called back instead of waiting in a queue."""

    __tablename__ = "callback_requests"
    __table_args__ = (Index("ix_callback_requests_status_queue", "status", "queue"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(20))
    queue: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), default=None)
    origin_linkedid: Mapped[str | None] = mapped_column(String(64), default=None)
    # pending | dialing | completed | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    agent: Mapped[str | None] = mapped_column(String(32), default=None)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
