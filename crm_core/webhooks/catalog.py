"""The webhook events a subscription may ask for, the domain event each comes from, and its JSON body."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime
from enum import Enum
from typing import Any

from crm_core.bus import field_names
from crm_core.calls.events import CallAnswered, CallEnded, CallStarted
from crm_core.customers.events import CustomerCreated, CustomerMerged
from crm_core.sla.events import SlaClockBreached
from crm_core.sms.events import SmsReceived
from crm_core.tickets.events import TicketCreated, TicketUpdated

# webhook event name -> the domain event on the bus it is made from
EVENT_SOURCES: dict[str, type[Any]] = {
    "call.started": CallStarted,
    "call.answered": CallAnswered,
    "call.ended": CallEnded,
    "ticket.created": TicketCreated,
    "ticket.updated": TicketUpdated,
    "sla.breached": SlaClockBreached,
    "sms.received": SmsReceived,
    "customer.created": CustomerCreated,
    "customer.merged": CustomerMerged,
}
EVENT_NAMES: tuple[str, ...] = tuple(EVENT_SOURCES)
NAME_OF: dict[type[Any], str] = {source: name for name, source in EVENT_SOURCES.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(getattr(value, name)) for name in field_names(type(value))}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookEvent:
    id: str  # the same for the same domain event in every process (the Redis bus gives it to each)
    type: str
    body: str  # the JSON sent: {"id", "type", "data"}


def webhook_event_of(domain_event: object) -> WebhookEvent | None:
    """The webhook event a domain event makes, or None when no webhook is made from its type."""
    name = NAME_OF.get(type(domain_event))
    if name is None:
        return None
    # the data encoded once (keys sorted), for the id and the body: the id hashes {"data": …, "type": …} with sorted
    # keys, the same in every process
    data = json.dumps(_plain(domain_event), sort_keys=True, separators=(",", ":"))
    kind = json.dumps(name)
    event_id = "evt_" + hashlib.sha256(f'{{"data":{data},"type":{kind}}}'.encode()).hexdigest()[:28]
    return WebhookEvent(event_id, name, f'{{"id":"{event_id}","type":{kind},"data":{data}}}')
