"""SLA tables: team calendars, policies, clocks per ticket (due times indexed), escalation rules and what they did."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.db import Base, new_id, utcnow

DEFAULT_PAUSED_STATUSES = ["pending", "on_hold"]
AT_RISK_CONDITION = "stopped_at IS NULL AND warned_at IS NOT NULL"
NEXT_CHECK_CONDITION = "next_check_at IS NOT NULL"


class SlaCalendar(Base):
    """A team's business hours: blocks as [weekday, "HH:MM", "HH:MM"] rows, holidays as ISO dates."""

    __tablename__ = "sla_calendars"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team: Mapped[str] = mapped_column(String(64), unique=True)
    time_zone: Mapped[str] = mapped_column(String(64))
    blocks: Mapped[list[Any]] = mapped_column(JSON, default=list)
    holidays: Mapped[list[Any]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SlaPolicy(Base):
    """Targets in business minutes for tickets matching priority, category and VIP tier (empty = any)."""

    __tablename__ = "sla_policies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    priority: Mapped[str | None] = mapped_column(String(16), default=None)
    category: Mapped[str | None] = mapped_column(String(64), default=None)
    vip_tier: Mapped[str | None] = mapped_column(String(16), default=None)
    calendar_id: Mapped[str | None] = mapped_column(ForeignKey("sla_calendars.id", ondelete="SET NULL"), default=None)
    first_response_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    next_response_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    resolution_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    warning_percent: Mapped[int] = mapped_column(Integer, default=75)
    paused_statuses: Mapped[list[Any]] = mapped_column(JSON, default=lambda: list(DEFAULT_PAUSED_STATUSES))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SlaClock(Base):
    """One run of one target on one ticket. Active while stopped_at is empty; `next_check_at` is the one indexed
    time the scheduler looks at (the warning, then the breach; empty when paused or done)."""

    __tablename__ = "sla_clocks"
    __table_args__ = (
        Index("ix_sla_clocks_ticket_kind", "ticket_id", "kind"),
        # the scheduler's one indexed look: only clocks it has still to look at (a clock past its breach, paused or
        # stopped leaves the index, so marking a breach touches one index less and an idle pass reads a small one)
        Index(
            "ix_sla_clocks_next_check_at",
            "next_check_at",
            postgresql_where=text(NEXT_CHECK_CONDITION),
            sqlite_where=text(NEXT_CHECK_CONDITION),
        ),
        # the wallboard's tickets at risk: active clocks past their warning (few, whatever the backlog)
        Index(
            "ix_sla_clocks_at_risk",
            "due_at",
            postgresql_where=text(AT_RISK_CONDITION),
            sqlite_where=text(AT_RISK_CONDITION),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # first_response|next_response|resolution
    policy_id: Mapped[str | None] = mapped_column(ForeignKey("sla_policies.id", ondelete="SET NULL"), default=None)
    calendar_id: Mapped[str | None] = mapped_column(ForeignKey("sla_calendars.id", ondelete="SET NULL"), default=None)
    target_minutes: Mapped[float] = mapped_column(Float)
    warning_percent: Mapped[int] = mapped_column(Integer, default=75)
    # business minutes counted before the current run; running_since is empty while paused
    used_minutes: Mapped[float] = mapped_column(Float, default=0.0)
    running_since: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    warn_at: Mapped[datetime | None] = mapped_column(default=None)
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    next_check_at: Mapped[datetime | None] = mapped_column(default=None)
    warned_at: Mapped[datetime | None] = mapped_column(default=None)
    breached_at: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running|paused|met|breached|cancelled
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    # business minutes to spare when stopped: positive = early, negative = late
    margin_minutes: Mapped[float | None] = mapped_column(Float, default=None)


class SlaEscalationRule(Base):
    """On a clock's warning or breach: reassign, raise the priority, or notify a supervisor."""

    __tablename__ = "sla_escalation_rules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    policy_id: Mapped[str | None] = mapped_column(ForeignKey("sla_policies.id", ondelete="CASCADE"), default=None)
    clock_kind: Mapped[str | None] = mapped_column(String(16), default=None)
    trigger: Mapped[str] = mapped_column(String(16))  # warning|breach
    action: Mapped[str] = mapped_column(String(16))  # reassign|raise_priority|notify
    target_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)


class SlaEscalation(Base):
    """A rule acted on a clock; the unique pair makes each rule act once per ticket and clock."""

    __tablename__ = "sla_escalations"
    __table_args__ = (UniqueConstraint("rule_id", "clock_id", name="uq_sla_escalations_rule_clock"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    rule_id: Mapped[str] = mapped_column(ForeignKey("sla_escalation_rules.id", ondelete="CASCADE"))
    clock_id: Mapped[str] = mapped_column(ForeignKey("sla_clocks.id", ondelete="CASCADE"), index=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    trigger: Mapped[str] = mapped_column(String(16))
    acted_at: Mapped[datetime] = mapped_column(default=utcnow)
