"""Tickets from outside the desk: the public web form (a signed time token, a per-address limit, size limits; the
customer matched by email or phone, or a new contact — never said which) and an agent's "Create ticket" from an SMS
conversation (the conversation and its messages linked to the ticket)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.customers.lookup import find_customer_id_by_phone
from crm_core.customers.models import Customer, CustomerEmail
from crm_core.customers.phones import caller_id_to_e164
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.db import utcnow
from crm_core.errors import CrmError, NotFound, PermissionDenied, ValidationFailed
from crm_core.inputs import check_text
from crm_core.sms.models import SmsConversation, SmsMessage
from crm_core.tickets.csat_models import IntakeThrottle
from crm_core.tickets.models import Ticket, TicketLink, TicketMessage
from crm_core.tickets.service import create_ticket
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, Actor, require_role

TOKEN_MAX_AGE = timedelta(days=1)
NAME_LENGTH = 200
EMAIL_LENGTH = 254
PHONE_LENGTH = 40
SUBJECT_LENGTH = 200
MESSAGE_LENGTH = 5000
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class TooManyRequests(CrmError):
    code = "too_many_requests"
    http_status = 429


class FormExpired(ValidationFailed):
    code = "form_expired"


# --- the signed time token ----------------------------------------------------------------------------------------


def _mac(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), f"intake-form:{payload}".encode(), hashlib.sha256).hexdigest()[:32]


def form_token(secret: str, now: datetime) -> str:
    """A token for a form shown at `now`: its time and a nonce, signed with the app's secret key."""
    payload = f"{int(now.timestamp())}.{secrets.token_hex(8)}"
    return f"{payload}.{_mac(secret, payload)}"


def check_form_token(token: str, *, secret: str, now: datetime, min_age: timedelta) -> None:
    """The form was shown by us at least `min_age` and at most a day ago; FormExpired otherwise."""
    parts = (token or "").split(".")
    if len(parts) != 3 or not parts[0].isdigit() or len(token) > 100:
        raise FormExpired("The form expired; reload the page and send it again.", field="form_token")
    payload = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_mac(secret, payload).encode(), parts[2].encode()):
        raise FormExpired("The form expired; reload the page and send it again.", field="form_token")
    shown = datetime.fromtimestamp(int(parts[0]), tz=now.tzinfo)
    age = now - shown
    if age > TOKEN_MAX_AGE or age < -timedelta(minutes=1):
        raise FormExpired("The form expired; reload the page and send it again.", field="form_token")
    if age < min_age:
        raise FormExpired("That was quick: please check what you wrote and send it again.", field="form_token")


# --- the per-address limit -----------------------------------------------------------------------------------------


async def count_submission(*, session: AsyncSession, address: str, now: datetime, per_hour: int) -> int:
    """Count one submission from `address` in this hour (an atomic upsert, shared by every worker); TooManyRequests
    past the limit. Windows older than two hours are dropped on the way."""
    window = now.replace(minute=0, second=0, microsecond=0)
    key = f"{address[:60]}|{window:%Y%m%d%H}"
    insert = postgres_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(IntakeThrottle)
        .values(key=key, count=1, window_start=window)
        .on_conflict_do_update(index_elements=["key"], set_={"count": IntakeThrottle.count + 1})
        .returning(IntakeThrottle.count)
    )
    count = int((await session.execute(statement)).scalar_one())
    await session.execute(delete(IntakeThrottle).where(IntakeThrottle.window_start < window - timedelta(hours=2)))
    if count > per_hour:
        raise TooManyRequests("Too many requests from your network this hour; please try again later or call us.")
    return count


# --- the public form -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebRequest:
    name: str
    email: str
    phone: str
    subject: str
    message: str


def check_web_request(form: WebRequest, *, region: str) -> tuple[WebRequest, str | None]:
    """The form's fields within their limits (email or phone required), and the phone in E.164."""
    name = check_text(form.name, field="name", max_length=NAME_LENGTH, required=True)
    email = check_text(form.email, field="email", max_length=EMAIL_LENGTH).lower()
    phone = check_text(form.phone, field="phone", max_length=PHONE_LENGTH)
    subject = check_text(form.subject, field="subject", max_length=SUBJECT_LENGTH, required=True)
    message = check_text(form.message, field="message", max_length=MESSAGE_LENGTH, multiline=True, required=True)
    if email and not _EMAIL.match(email):
        raise ValidationFailed("The email address does not look right.", field="email")
    e164 = None
    if phone:
        e164 = phone if phone.startswith("+") and phone[1:].isdigit() else caller_id_to_e164(phone, region)
        if e164 is None:
            raise ValidationFailed("The phone number does not look right.", field="phone")
    if not email and not phone:
        raise ValidationFailed("Give an email address or a phone number, so we can answer.", field="email")
    return WebRequest(name, email, phone, subject, message.strip()), e164


async def submit_web_request(
    *, session: AsyncSession, form: WebRequest, region: str, now: datetime | None = None
) -> Ticket:
    """A ticket from the public form, on the customer with this email or phone (the email first), or on a new
    contact. The caller shows the same answer either way."""
    checked, e164 = check_web_request(form, region=region)
    when = now or utcnow()
    customer_id: str | None = None
    if checked.email:
        customer_id = await session.scalar(
            select(CustomerEmail.customer_id)
            .join(Customer, Customer.id == CustomerEmail.customer_id)
            .where(CustomerEmail.email == checked.email, Customer.merged_into_id.is_(None))  # stored lower-cased
            .limit(1)
        )
    if customer_id is None and e164 is not None:
        customer_id = await find_customer_id_by_phone(session=session, number=e164, region=region)
    if customer_id is None:
        try:
            data = CustomerIn(
                name=checked.name,
                emails=[checked.email] if checked.email else [],
                phones=[PhoneIn(number=e164)] if e164 else [],
            )
        except PydanticValidationError:
            raise ValidationFailed("Check your name, email and phone number.", field="name") from None
        customer = await create_customer(session=session, actor=SYSTEM, region=region, data=data)
        customer_id = customer.id
    ticket = await create_ticket(
        session=session,
        actor=SYSTEM,
        subject=checked.subject,
        description=checked.message,
        customer_id=customer_id,
        category="web form",
        now=when,
    )
    session.add(TicketMessage(ticket_id=ticket.id, kind="customer", body=checked.message, created_at=when))
    await session.flush()
    return ticket


# --- from an SMS conversation --------------------------------------------------------------------------------------


async def ticket_from_conversation(
    *, session: AsyncSession, actor: Actor, conversation_id: str, subject: str | None = None
) -> Ticket:
    """A ticket for the conversation's customer, its texts linked (each SMS of the conversation) and the customer's
    texts in the ticket's conversation. Agents may do it for unassigned conversations and their own."""
    require_role(actor, Role.AGENT, Role.SUPERVISOR)
    conversation = await session.get(SmsConversation, conversation_id)
    if conversation is None:
        raise NotFound("No such conversation.", conversation_id=conversation_id)
    if actor.role is Role.AGENT and conversation.assignee_id not in (None, actor.user_id):
        raise PermissionDenied("This conversation is assigned to another agent.", conversation_id=conversation_id)
    messages = list(
        await session.scalars(
            select(SmsMessage)
            .where(SmsMessage.conversation_id == conversation.id)
            .order_by(SmsMessage.created_at, SmsMessage.id)
            .limit(500)
        )
    )
    first_inbound = next((m for m in messages if m.direction == "inbound"), None)
    default = (first_inbound.body if first_inbound else conversation.last_body) or "SMS"
    title = " ".join((subject or "").split()) or f"SMS: {' '.join(default.split())}"
    title = "".join(c for c in title if c.isprintable())  # a text may hold what a subject line may not
    ticket = await create_ticket(
        session=session,
        actor=actor,
        subject=title[:SUBJECT_LENGTH],
        customer_id=conversation.customer_id,
        category="sms",
        assignee_id=actor.user_id if actor.role is not Role.ADMIN else None,
        team=conversation.queue,
    )
    for message in messages:
        session.add(TicketLink(ticket_id=ticket.id, sms_id=message.id))
        if message.direction == "inbound":
            session.add(
                TicketMessage(ticket_id=ticket.id, kind="customer", body=message.body, created_at=message.created_at)
            )
    await session.flush()
    return ticket
