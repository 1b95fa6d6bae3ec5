"""The REST API's pydantic models: they validate requests and shape responses, and the OpenAPI document is generated
from them. Inputs reuse crm_core's own models (CustomerIn, MergeRequest) where the service already defines one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from crm_core.customers.schemas import CustomerIn, RecordId
from crm_core.inputs import LONG_TEXT, MULTI_LINE, SINGLE_LINE
from crm_core.tickets.models import PRIORITIES, STATUSES
from crm_core.tokens.reads import MAX_LIMIT
from crm_core.webhooks.catalog import EVENT_NAMES
from crm_core.webhooks.models import DELIVERY_STATUSES
from crm_core.webhooks.service import MAX_IN_FLIGHT
from crm_core.webhooks.urls import MAX_URL_LENGTH

Cursor = Annotated[str, StringConstraints(max_length=400, pattern=r"^[A-Za-z0-9_-]*$")]
Line = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200), SINGLE_LINE]
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT)]
TicketStatus = Literal["new", "open", "pending", "on_hold", "resolved", "closed"]
TicketPriority = Literal["low", "normal", "high", "urgent"]
assert set(STATUSES) == set(TicketStatus.__args__) and set(PRIORITIES) == set(TicketPriority.__args__)  # type: ignore[attr-defined]


class ErrorBody(BaseModel):
    """Every error of the API, whatever the route: a stable code, one sentence, and details."""

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- customers ---------------------------------------------------------------------------------------------------


class PhoneOut(BaseModel):
    number: str = Field(description="E.164")
    label: str
    is_primary: bool


class CustomerOut(BaseModel):
    """A customer. `version` is the same value as the ETag header: send it back as If-Match to update."""

    id: str
    kind: str
    name: str
    parent_id: str | None
    title: str | None
    phones: list[PhoneOut]
    emails: list[str]
    street: str | None
    city: str | None
    postal_code: str | None
    country: str | None
    timezone: str | None
    language: str | None
    tags: list[str]
    owner_id: str | None
    custom_fields: dict[str, Any]
    vip_tier: str | None
    merged_into_id: str | None
    created_at: datetime
    version: str


class CustomerSummary(BaseModel):
    """A search result: what a list shows of a customer; read the customer for the whole record and its version."""

    id: str
    name: str
    kind: str
    city: str | None
    phones: list[str] = Field(description="E.164")
    emails: list[str]
    tags: list[str]


class CustomerList(BaseModel):
    """A page of customers; pass `next_cursor` as `cursor` for the next one (null: no more)."""

    items: list[CustomerSummary]
    next_cursor: str | None


class CustomerSearch(Strict):
    q: Annotated[str, StringConstraints(max_length=200), SINGLE_LINE] = Field(
        default="", description="a name, any written form of a phone number, or an email"
    )
    company_id: RecordId | None = None
    tag: Line | None = None
    owner_id: RecordId | None = None
    unowned: bool = Field(default=False, description="only customers nobody owns (the shared pool)")
    cursor: Cursor | None = None


class NewCustomer(CustomerIn):
    allow_duplicate: bool = Field(default=False, description="create even when it looks like existing customers")


class IfMatch(BaseModel):
    if_match: Annotated[str, StringConstraints(max_length=400)] | None = Field(
        default=None, description="the customer's ETag (or its `version`) from the last read; without it: 428"
    )


class CustomerMerge(Strict):
    merge_id: RecordId = Field(description="the customer folded into this one (its calls, tickets, SMS move over)")


# --- calls -------------------------------------------------------------------------------------------------------


class CallOut(BaseModel):
    id: str
    linkedid: str
    direction: str
    caller_number: str
    caller_name: str
    callee_number: str
    customer_id: str | None
    queue: str | None
    agent: str | None
    offered_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    wait_seconds: float
    talk_seconds: float
    hold_seconds: float
    outcome: str | None
    disposition_code: str | None
    has_recording: bool


class CallList(BaseModel):
    items: list[CallOut]
    next_cursor: str | None


class CallQuery(Strict):
    cursor: Cursor | None = None
    limit: Limit = 50
    customer_id: RecordId | None = None
    direction: Literal["inbound", "outbound", "internal"] | None = None
    outcome: Annotated[str, StringConstraints(max_length=16, pattern=r"^[a-z_]+$")] | None = None
    since: datetime | None = None
    until: datetime | None = None


class RecordingLink(BaseModel):
    """Where the call's recording is played (the agent desktop's player, for a signed-in supervisor)."""

    linkedid: str
    available: bool
    url: str | None


# --- tickets -----------------------------------------------------------------------------------------------------


class TicketOut(BaseModel):
    id: str
    number: int
    subject: str
    description: str
    status: str
    priority: str
    category: str | None
    customer_id: str | None
    assignee_id: str | None
    team: str | None
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None
    resolved_at: datetime | None


class TicketList(BaseModel):
    items: list[TicketOut]
    next_cursor: str | None


class TicketQuery(Strict):
    cursor: Cursor | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 25
    status: TicketStatus | None = None
    priority: TicketPriority | None = None
    customer_id: RecordId | None = None
    team: Line | None = None


class NewTicket(Strict):
    subject: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), SINGLE_LINE]
    description: Annotated[str, StringConstraints(max_length=LONG_TEXT), MULTI_LINE] = ""
    customer_id: RecordId | None = None
    priority: TicketPriority = "normal"
    category: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64), SINGLE_LINE] | None = None
    assignee_id: RecordId | None = None
    team: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64), SINGLE_LINE] | None = None


class TicketChange(Strict):
    subject: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), SINGLE_LINE] | None
    ) = None
    status: TicketStatus | None = None
    priority: TicketPriority | None = None
    assignee_id: Annotated[str, StringConstraints(max_length=32), SINGLE_LINE] | None = Field(
        default=None, description="an empty text unassigns"
    )
    category: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64), SINGLE_LINE] | None = None
    team: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64), SINGLE_LINE] | None = None


# --- SMS ---------------------------------------------------------------------------------------------------------


class SmsOut(BaseModel):
    id: str
    direction: str
    from_number: str
    to_number: str
    body: str
    status: str
    customer_id: str | None
    conversation_id: str | None
    segments: int
    created_at: datetime


class SmsList(BaseModel):
    items: list[SmsOut]
    next_cursor: str | None


class SmsQuery(Strict):
    cursor: Cursor | None = None
    limit: Limit = 50
    customer_id: RecordId | None = None
    direction: Literal["inbound", "outbound"] | None = None
    status: Annotated[str, StringConstraints(max_length=16, pattern=r"^[a-z_]+$")] | None = None


class NewSms(Strict):
    to: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64), SINGLE_LINE] = Field(
        description="the recipient, in any written form of a phone number"
    )
    body: Annotated[str, StringConstraints(min_length=1, max_length=1600), MULTI_LINE]


# --- users -------------------------------------------------------------------------------------------------------


class UserOut(BaseModel):
    id: str
    username: str
    display_name: str
    role: str
    extension: str | None
    queues: list[str]
    is_active: bool
    created_at: datetime


class UserList(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class UserQuery(Strict):
    cursor: Cursor | None = None
    limit: Limit = 50
    role: Literal["agent", "supervisor", "marketer", "admin"] | None = None


# --- webhooks ----------------------------------------------------------------------------------------------------

WebhookEventName = Literal[
    "call.started",
    "call.answered",
    "call.ended",
    "ticket.created",
    "ticket.updated",
    "sla.breached",
    "sms.received",
    "customer.created",
    "customer.merged",
]
DeliveryStatus = Literal["pending", "sending", "delivered", "dead"]
assert set(EVENT_NAMES) == set(WebhookEventName.__args__)  # type: ignore[attr-defined]
assert set(DELIVERY_STATUSES) == set(DeliveryStatus.__args__)  # type: ignore[attr-defined]
WebhookName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), SINGLE_LINE]
WebhookUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_URL_LENGTH),
    Field(description="http(s) only; its host must resolve to addresses the settings allow (no private networks)"),
]
InFlight = Annotated[int, Field(ge=1, le=MAX_IN_FLIGHT, description="requests to this receiver at once")]
EventList = Annotated[list[WebhookEventName], Field(min_length=1, max_length=len(EVENT_NAMES))]


class SubscriptionOut(BaseModel):
    """A webhook subscription. Its signing secret is shown only when it is created or rotated."""

    id: str
    name: str
    url: str
    events: list[str]
    active: bool
    max_in_flight: int
    created_at: datetime
    updated_at: datetime


class SubscriptionWithSecret(SubscriptionOut):
    """The subscription and its signing secret: keep the secret now, it is never shown again."""

    secret: str


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class NewSubscription(Strict):
    name: WebhookName
    url: WebhookUrl
    events: EventList
    active: bool = True
    max_in_flight: InFlight = 8


class SubscriptionChange(Strict):
    name: WebhookName | None = None
    url: WebhookUrl | None = None
    events: EventList | None = None
    active: bool | None = None
    max_in_flight: InFlight | None = None


class SubscriptionDeleted(BaseModel):
    id: str
    deleted: bool


class DeliveryOut(BaseModel):
    """One event for one subscription; `id` is the delivery id header the receiver sees on every attempt."""

    id: str
    subscription_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None


class DeliveryList(BaseModel):
    """A page of deliveries, newest first; pass `next_cursor` as `cursor` for the next one (null: no more)."""

    items: list[DeliveryOut]
    next_cursor: str | None


class DeliveryQuery(Strict):
    cursor: Cursor | None = None
    limit: Limit = 50
    status: DeliveryStatus | None = None
