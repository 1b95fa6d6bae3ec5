"""The REST API, /api/v1: customers, calls, tickets, SMS and users for integrations, authenticated by API token.
A route checks the token's scope, validates with the models in schemas.py (the OpenAPI document is built from the
same ones), then calls the crm_core service, whose role and ownership checks apply to the token's actor."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from quart import current_app, url_for
from quart_schema import tag, validate_headers, validate_querystring, validate_request, validate_response

from agent_desktop.api.auth import current_principal, require_token
from agent_desktop.api.blueprint import token_blueprint
from agent_desktop.api.schemas import (
    CallList,
    CallOut,
    CallQuery,
    CustomerList,
    CustomerMerge,
    CustomerOut,
    CustomerSearch,
    CustomerSummary,
    IfMatch,
    NewCustomer,
    NewSms,
    NewTicket,
    PhoneOut,
    RecordingLink,
    SmsList,
    SmsOut,
    SmsQuery,
    TicketChange,
    TicketList,
    TicketOut,
    TicketQuery,
    UserList,
    UserOut,
    UserQuery,
)
from agent_desktop.routes.common import runtime
from crm_core.calls.models import CallLog
from crm_core.calls.service import get_call
from crm_core.customers.models import Customer
from crm_core.customers.schemas import CustomerIn
from crm_core.customers.search import MAX_PAGE, CustomerQuery, search_customers
from crm_core.customers.service import (
    create_customer,
    get_customer,
    merge_customers,
    record_customer_view,
    snapshot,
    update_customer,
)
from crm_core.errors import Conflict, CrmError, NotFound, ValidationFailed
from crm_core.sms import service as sms
from crm_core.sms.models import SmsMessage
from crm_core.tickets.models import Ticket
from crm_core.tickets.service import TicketFilters, create_ticket, get_ticket, list_tickets, update_ticket
from crm_core.tokens import reads
from crm_core.users.models import User

blueprint = token_blueprint("api_v1", __name__, "/api/v1")


class PreconditionFailed(CrmError):
    code = "precondition_failed"
    http_status = 412


class PreconditionRequired(CrmError):
    code = "precondition_required"
    http_status = 428


class SmsNotConfigured(Conflict):
    code = "sms_not_configured"


# --- customers ---------------------------------------------------------------------------------------------------


def customer_version(customer: Customer) -> str:
    """The customer's ETag: a hash of everything the API shows of it, so any change (a phone too) changes it."""
    shown = {**snapshot(customer), "merged_into_id": customer.merged_into_id}
    return '"' + hashlib.sha256(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()[:32] + '"'


def _entity_tags(if_match: str) -> set[str]:
    """The tags an If-Match names ("a", W/"b", or a bare version), without quotes; "*" matches any version."""
    return {part.strip().removeprefix("W/").strip('"') for part in if_match.split(",")}


def customer_out(customer: Customer) -> CustomerOut:
    return CustomerOut(
        id=customer.id,
        kind=customer.kind,
        name=customer.name,
        parent_id=customer.parent_id,
        title=customer.title,
        phones=[PhoneOut(number=p.e164, label=p.label, is_primary=p.is_primary) for p in customer.phones],
        emails=[e.email for e in customer.emails],
        street=customer.street,
        city=customer.city,
        postal_code=customer.postal_code,
        country=customer.country,
        timezone=customer.timezone,
        language=customer.language,
        tags=sorted(t.name for t in customer.tags),
        owner_id=customer.owner_id,
        custom_fields=dict(customer.custom_fields or {}),
        vip_tier=customer.vip_tier,
        merged_into_id=customer.merged_into_id,
        created_at=customer.created_at,
        version=customer_version(customer),
    )


def _page_cursor(cursor: str | None, *, last: int) -> int:
    if not cursor:
        return 1
    (page,) = reads.decode_cursor(cursor, 1)
    if not isinstance(page, int) or not 1 <= page <= last:
        raise ValidationFailed("The cursor is not one this API gave out.", field="cursor")
    return page


async def _check_references(db: Any, data: CustomerIn, customer_id: str | None = None) -> None:
    """What the service leaves to the database's foreign keys, refused here with a clear error instead."""
    if data.owner_id and await db.get(User, data.owner_id) is None:
        raise NotFound("No such user to own the customer.", field="owner_id")
    if data.parent_id and (data.parent_id == customer_id or await db.get(Customer, data.parent_id) is None):
        raise NotFound("The company this contact belongs to does not exist.", field="parent_id")
    if "\\u0000" in json.dumps(data.custom_fields):  # no database text keeps a NUL
        raise ValidationFailed("custom_fields must not contain NUL characters.", field="custom_fields")


@blueprint.get("/customers")
@tag(["customers"])
@require_token("customers:read")
@validate_querystring(CustomerSearch)
@validate_response(CustomerList)
async def search(query_args: CustomerSearch) -> CustomerList:
    """Search customers

    By name (prefix, word or typo-tolerant), any written form of a phone number, or email; filtered by company,
    tag, owner or the shared pool. With no text, every customer in name order."""
    page = _page_cursor(query_args.cursor, last=MAX_PAGE)
    async with runtime().sessions() as db:
        found = await search_customers(
            session=db,
            actor=current_principal().actor,
            query=CustomerQuery(
                text=query_args.q,
                company_id=query_args.company_id,
                tag=query_args.tag,
                owner_id=query_args.owner_id,
                unowned=query_args.unowned,
                page=page,
            ),
            region=runtime().settings.default_region,
        )
        items = [
            CustomerSummary(
                id=hit.id,
                name=hit.name,
                kind=hit.kind,
                city=hit.city,
                phones=list(hit.phones),
                emails=list(hit.emails),
                tags=list(hit.tags),
            )
            for hit in found.customers
        ]
    more = found.has_next and page < MAX_PAGE
    return CustomerList(items=items, next_cursor=reads.encode_cursor(page + 1) if more else None)


@blueprint.get("/customers/<customer_id>")
@tag(["customers"])
@require_token("customers:read")
@validate_response(CustomerOut)
async def read_customer(customer_id: str) -> tuple[CustomerOut, int, dict[str, str]]:
    """Read a customer

    The ETag header (and `version`) is what an update sends back as If-Match. The read is audited."""
    async with runtime().unit_of_work() as db:
        me = current_principal().actor
        customer = await get_customer(session=db, actor=me, customer_id=customer_id)
        await record_customer_view(session=db, actor=me, customer_id=customer.id)
        out = customer_out(customer)
    return out, 200, {"ETag": out.version}


@blueprint.post("/customers")
@tag(["customers"])
@require_token("customers:write")
@validate_request(NewCustomer)
@validate_response(CustomerOut, 201)
async def create(data: NewCustomer) -> tuple[CustomerOut, int, dict[str, str]]:
    """Create a customer

    Refused with 409 `duplicate_customer` (its candidates in details) when it looks like an existing customer,
    unless `allow_duplicate` is true."""
    fields = data.model_dump(exclude={"allow_duplicate"})
    async with runtime().unit_of_work() as db:
        customer_in = CustomerIn.model_validate(fields)
        await _check_references(db, customer_in)
        customer = await create_customer(
            session=db,
            actor=current_principal().actor,
            data=customer_in,
            region=runtime().settings.default_region,
            allow_duplicate=data.allow_duplicate,
        )
        out = customer_out(customer)
    return out, 201, {"ETag": out.version, "Location": url_for("api_v1.read_customer", customer_id=out.id)}


@blueprint.put("/customers/<customer_id>")
@tag(["customers"])
@require_token("customers:write")
@validate_headers(IfMatch)
@validate_request(CustomerIn)
@validate_response(CustomerOut)
async def update(customer_id: str, data: CustomerIn, headers: IfMatch) -> tuple[CustomerOut, int, dict[str, str]]:
    """Replace a customer

    Needs If-Match with the ETag of the last read: a customer changed since is refused with 412, and nothing is
    written. The owner is changed by the desktop's assignment, not here."""
    async with runtime().unit_of_work() as db:
        me = current_principal().actor
        # locked for the comparison and the write: a second writer waits, then sees the new version
        await db.get(Customer, customer_id, with_for_update=True)
        customer = await get_customer(session=db, actor=me, customer_id=customer_id)
        current = customer_version(customer)
        if headers.if_match is None:
            raise PreconditionRequired("Send If-Match with the customer's ETag from your last read.")
        named = _entity_tags(headers.if_match)
        if "*" not in named and current.strip('"') not in named:
            raise PreconditionFailed(
                "The customer changed since you read it; read it again and re-apply your change.",
                current_version=current,
            )
        await _check_references(db, data.model_copy(update={"owner_id": None}), customer_id)
        updated = await update_customer(
            session=db, actor=me, customer_id=customer_id, data=data, region=runtime().settings.default_region
        )
        out = customer_out(updated)
    return out, 200, {"ETag": out.version}


@blueprint.post("/customers/<customer_id>/merge")
@tag(["customers"])
@require_token("customers:write")
@validate_request(CustomerMerge)
@validate_response(CustomerOut)
async def merge(customer_id: str, data: CustomerMerge) -> tuple[CustomerOut, int, dict[str, str]]:
    """Merge a customer into this one

    The other customer's calls, tickets, SMS, notes, phones, emails and tags move to this one."""
    async with runtime().unit_of_work() as db:
        kept = await merge_customers(
            session=db, actor=current_principal().actor, keep_id=customer_id, merge_id=data.merge_id
        )
        out = customer_out(kept)
    return out, 200, {"ETag": out.version}


# --- calls -------------------------------------------------------------------------------------------------------


def call_out(call: CallLog) -> CallOut:
    return CallOut(
        id=call.id,
        linkedid=call.linkedid,
        direction=call.direction,
        caller_number=call.caller_number,
        caller_name=call.caller_name,
        callee_number=call.callee_number,
        customer_id=call.customer_id,
        queue=call.queue,
        agent=call.agent,
        offered_at=call.offered_at,
        answered_at=call.answered_at,
        ended_at=call.ended_at,
        wait_seconds=call.wait_seconds,
        talk_seconds=call.talk_seconds,
        hold_seconds=call.hold_seconds,
        outcome=call.outcome,
        disposition_code=call.disposition_code,
        has_recording=bool(call.recording_ref),
    )


@blueprint.get("/calls")
@tag(["calls"])
@require_token("calls:read")
@validate_querystring(CallQuery)
@validate_response(CallList)
async def calls(query_args: CallQuery) -> CallList:
    """List calls

    Newest first; filtered by customer, direction, outcome and time (since inclusive, until exclusive)."""
    async with runtime().sessions() as db:
        page = await reads.list_calls(
            session=db,
            actor=current_principal().actor,
            cursor=query_args.cursor,
            limit=query_args.limit,
            customer_id=query_args.customer_id,
            direction=query_args.direction,
            outcome=query_args.outcome,
            since=query_args.since,
            until=query_args.until,
        )
    return CallList(items=[call_out(c) for c in page.items], next_cursor=page.next_cursor)


@blueprint.get("/calls/<linkedid>")
@tag(["calls"])
@require_token("calls:read")
@validate_response(CallOut)
async def read_call(linkedid: str) -> CallOut:
    """Read a call"""
    async with runtime().sessions() as db:
        call = await get_call(session=db, actor=current_principal().actor, linkedid=linkedid)
        return call_out(call)


@blueprint.get("/calls/<linkedid>/recording")
@tag(["calls"])
@require_token("calls:read")
@validate_response(RecordingLink)
async def recording_link(linkedid: str) -> RecordingLink:
    """The call's recording link

    The URL plays the recording in the agent desktop for a signed-in supervisor or the agent who answered; each
    listen there is audited."""
    async with runtime().sessions() as db:
        call = await get_call(session=db, actor=current_principal().actor, linkedid=linkedid)
    url = url_for("calls.api_call_recording", linkedid=call.linkedid) if call.recording_ref else None
    return RecordingLink(linkedid=call.linkedid, available=url is not None, url=url)


# --- tickets -----------------------------------------------------------------------------------------------------


def ticket_out(ticket: Ticket) -> TicketOut:
    return TicketOut(
        id=ticket.id,
        number=ticket.number,
        subject=ticket.subject,
        description=ticket.description,
        status=ticket.status,
        priority=ticket.priority,
        category=ticket.category,
        customer_id=ticket.customer_id,
        assignee_id=ticket.assignee_id,
        team=ticket.team,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        due_at=ticket.due_at,
        resolved_at=ticket.resolved_at,
    )


TICKET_PAGES = 10_000


@blueprint.get("/tickets")
@tag(["tickets"])
@require_token("tickets:read")
@validate_querystring(TicketQuery)
@validate_response(TicketList)
async def tickets(query_args: TicketQuery) -> TicketList:
    """List tickets

    Open tickets (or those of `status`), newest first, filtered by priority, customer and team."""
    page = _page_cursor(query_args.cursor, last=TICKET_PAGES)
    filters = TicketFilters(
        status=query_args.status,
        priority=query_args.priority,
        customer_id=query_args.customer_id,
        team=query_args.team,
        page=page,
        page_size=query_args.limit,
    )
    async with runtime().sessions() as db:
        found = await list_tickets(session=db, actor=current_principal().actor, filters=filters)
    more = found.has_more and page < TICKET_PAGES
    return TicketList(
        items=[ticket_out(r.ticket) for r in found.rows], next_cursor=reads.encode_cursor(page + 1) if more else None
    )


@blueprint.get("/tickets/<ticket_id>")
@tag(["tickets"])
@require_token("tickets:read")
@validate_response(TicketOut)
async def read_ticket(ticket_id: str) -> TicketOut:
    """Read a ticket"""
    async with runtime().sessions() as db:
        return ticket_out(await get_ticket(session=db, actor=current_principal().actor, ticket_id=ticket_id))


@blueprint.post("/tickets")
@tag(["tickets"])
@require_token("tickets:write")
@validate_request(NewTicket)
@validate_response(TicketOut, 201)
async def open_ticket(data: NewTicket) -> tuple[TicketOut, int, dict[str, str]]:
    """Open a ticket

    Its SLA clocks start as for a ticket opened in the desk."""
    async with runtime().unit_of_work() as db:
        ticket = await create_ticket(
            session=db,
            actor=current_principal().actor,
            subject=data.subject,
            description=data.description,
            customer_id=data.customer_id,
            priority=data.priority,
            category=data.category,
            assignee_id=data.assignee_id,
            team=data.team,
        )
        out = ticket_out(ticket)
    return out, 201, {"Location": url_for("api_v1.read_ticket", ticket_id=out.id)}


@blueprint.patch("/tickets/<ticket_id>")
@tag(["tickets"])
@require_token("tickets:write")
@validate_request(TicketChange)
@validate_response(TicketOut)
async def change_ticket(ticket_id: str, data: TicketChange) -> TicketOut:
    """Change a ticket

    Only the fields sent change; the SLA clocks follow a new status, priority or team."""
    async with runtime().unit_of_work() as db:
        ticket = await update_ticket(
            session=db, actor=current_principal().actor, ticket_id=ticket_id, **data.model_dump(exclude_unset=True)
        )
        return ticket_out(ticket)


# --- SMS ---------------------------------------------------------------------------------------------------------


def sms_out(message: SmsMessage) -> SmsOut:
    return SmsOut(
        id=message.id,
        direction=message.direction,
        from_number=message.from_number,
        to_number=message.to_number,
        body=message.body,
        status=message.status,
        customer_id=message.customer_id,
        conversation_id=message.conversation_id,
        segments=message.segments,
        created_at=message.created_at,
    )


@blueprint.get("/sms")
@tag(["sms"])
@require_token("sms:read")
@validate_querystring(SmsQuery)
@validate_response(SmsList)
async def sms_messages(query_args: SmsQuery) -> SmsList:
    """List SMS messages

    Newest first, both directions, filtered by customer, direction and status."""
    async with runtime().sessions() as db:
        page = await reads.list_sms(
            session=db,
            actor=current_principal().actor,
            cursor=query_args.cursor,
            limit=query_args.limit,
            customer_id=query_args.customer_id,
            direction=query_args.direction,
            status=query_args.status,
        )
    return SmsList(items=[sms_out(m) for m in page.items], next_cursor=page.next_cursor)


@blueprint.post("/sms")
@tag(["sms"])
@require_token("sms:write")
@validate_request(NewSms)
@validate_response(SmsOut, 202)
async def send_sms(data: NewSms) -> tuple[SmsOut, int]:
    """Send an SMS

    Queued in the customer's open conversation (a new one when none is open) and sent by the outbox; refused with
    409 `opted_out` when the customer texted STOP."""
    settings = runtime().settings
    if not settings.sms_sender:
        raise SmsNotConfigured("No SMS sender is configured (CRM_SMS_SENDER).")
    number = sms.normalize_number(data.to, settings.default_region)
    if number is None:
        raise ValidationFailed("`to` is not a phone number.", field="to")
    async with runtime().unit_of_work() as db:
        customer_id = await sms.customer_for_number(session=db, number=number, region=settings.default_region)
        conversation = await sms.conversation_for(
            session=db, customer_id=customer_id, number=number, our_number=settings.sms_sender, queue=settings.sms_queue
        )
        message = await sms.reply(
            session=db,
            actor=current_principal().actor,
            conversation_id=conversation.id,
            body=data.body,
            sender=settings.sms_sender,
        )
        out = sms_out(message)
    outbox = current_app.extensions.get("sms_outbox")
    if outbox is not None:
        outbox.wake.set()
    return out, 202


# --- users -------------------------------------------------------------------------------------------------------


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        extension=user.extension,
        queues=[str(q) for q in user.queues or []],
        is_active=user.is_active,
        created_at=user.created_at,
    )


@blueprint.get("/users")
@tag(["users"])
@require_token("users:read")
@validate_querystring(UserQuery)
@validate_response(UserList)
async def users(query_args: UserQuery) -> UserList:
    """List users"""
    async with runtime().sessions() as db:
        page = await reads.list_users(
            session=db,
            actor=current_principal().actor,
            cursor=query_args.cursor,
            limit=query_args.limit,
            role=query_args.role,
        )
    return UserList(items=[user_out(u) for u in page.items], next_cursor=page.next_cursor)


@blueprint.get("/users/<user_id>")
@tag(["users"])
@require_token("users:read")
@validate_response(UserOut)
async def read_user(user_id: str) -> UserOut:
    """Read a user"""
    async with runtime().sessions() as db:
        user = await reads.read_user(session=db, actor=current_principal().actor, user_id=user_id)
    if user is None:
        raise NotFound("No such user.", user_id=user_id)
    return user_out(user)
