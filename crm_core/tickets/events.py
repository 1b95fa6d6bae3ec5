"""Tickets domain events, published after commit: a ticket created or updated (for integrations), and a ticket
changed (fields, conversation, watchers, tags, a merge) — for its people, live."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crm_core.bus import register_event


@register_event
@dataclass(frozen=True, slots=True)
class TicketChanged:
    """`change` says what in words a person reads ("status", "reply", "note", "watchers", "tags", "merged");
    `audience` is the users to tell: the assignee and the watchers, not the one who made the change."""

    ticket_id: str
    ticket_number: int
    change: str
    actor_id: str | None
    audience: tuple[str, ...]
    at: datetime
    merged_into_id: str | None = None


@register_event
@dataclass(frozen=True, slots=True)
class TicketCreated:
    ticket_id: str
    number: int
    subject: str
    status: str
    priority: str
    customer_id: str | None
    assignee_id: str | None
    team: str | None
    created_at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class TicketUpdated:
    """A ticket's fields changed; `changed` names them (status, priority, assignee_id, subject, category, team)."""

    ticket_id: str
    number: int
    changed: tuple[str, ...]
    status: str
    priority: str
    assignee_id: str | None
    team: str | None
    updated_at: datetime
