"""What happened in SMS conversations, published after commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crm_core.bus import register_event


@register_event
@dataclass(frozen=True, slots=True)
class SmsReceived:
    message_id: str
    conversation_id: str
    customer_id: str | None
    number: str
    body: str
    queue: str | None
    assignee_id: str | None
    received_at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class SmsStatusChanged:
    message_id: str
    conversation_id: str | None
    status: str
    error_code: str | None
    changed_at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class SmsConsentChanged:
    number: str
    customer_id: str | None
    opted_out: bool
    source: str
    changed_at: datetime
