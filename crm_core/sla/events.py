"""SLA domain events: a clock crossed its warning threshold or its due time; a rule escalated a ticket."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crm_core.bus import register_event


@register_event
@dataclass(frozen=True, slots=True)
class SlaClockWarned:
    ticket_id: str
    ticket_number: int
    subject: str
    clock_id: str
    kind: str
    due_at: datetime | None
    assignee_extension: str | None
    at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class SlaClockBreached:
    ticket_id: str
    ticket_number: int
    subject: str
    clock_id: str
    kind: str
    due_at: datetime | None
    assignee_extension: str | None
    at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class TicketEscalated:
    ticket_id: str
    ticket_number: int
    rule_id: str
    action: str
    trigger: str
    clock_kind: str
    notify_extension: str | None
    at: datetime
