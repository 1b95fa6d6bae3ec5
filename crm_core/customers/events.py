"""Customer domain events, published after commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crm_core.bus import register_event


@register_event
@dataclass(frozen=True, slots=True)
class CustomerCreated:
    customer_id: str
    kind: str
    name: str
    created_at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class CustomerMerged:
    """`merged_id` was folded into `kept_id` (its calls, tickets, SMS … now belong to `kept_id`)."""

    kept_id: str
    merged_id: str
    merged_at: datetime
