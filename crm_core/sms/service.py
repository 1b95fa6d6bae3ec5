"""SMS services: the outbox rows, conversations agents work in (list, read, reply, assign, close), and opt-outs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.customers.lookup import find_customer_id_by_phone
from crm_core.customers.models import Customer, CustomerPhone
from crm_core.customers.phones import caller_id_to_e164
from crm_core.db import new_id, record_event, utcnow
from crm_core.errors import NotFound, PermissionDenied, ValidationFailed
from crm_core.sms.errors import ConversationClosed, RecipientOptedOut
from crm_core.sms.events import SmsConsentChanged
from crm_core.sms.models import SmsConsentChange, SmsConversation, SmsMessage
from crm_core.sms.segments import sms_shape
from crm_core.users.models import Role, User
from crm_core.users.service import Actor, require_role

STAFF = (Role.AGENT, Role.SUPERVISOR)
MAX_BODY = 1600  # Twilio's limit for one message body
View = Literal["unassigned", "mine", "queue", "all"]


# --- opt-out -------------------------------------------------------------------------------------------------------


async def latest_consent(*, session: AsyncSession, number: str) -> SmsConsentChange | None:
    return await session.scalar(
        select(SmsConsentChange)
        .where(SmsConsentChange.number == number)
        .order_by(SmsConsentChange.at.desc(), SmsConsentChange.id.desc())
        .limit(1)
    )


async def is_opted_out(*, session: AsyncSession, number: str) -> bool:
    latest = await latest_consent(session=session, number=number)
    return bool(latest and latest.opted_out)


async def opted_out_numbers(*, session: AsyncSession, numbers: list[str]) -> set[str]:
    """Which of `numbers` are opted out now (their latest change says so), in one query."""
    if not numbers:
        return set()
    latest = (
        select(SmsConsentChange.number, func.max(SmsConsentChange.at).label("at"))
        .where(SmsConsentChange.number.in_(numbers))
        .group_by(SmsConsentChange.number)
        .subquery()
    )
    return set(
        await session.scalars(
            select(SmsConsentChange.number)
            .join(latest, (latest.c.number == SmsConsentChange.number) & (latest.c.at == SmsConsentChange.at))
            .where(SmsConsentChange.opted_out.is_(True))
        )
    )


async def record_consent(
    *,
    session: AsyncSession,
    number: str,
    opted_out: bool,
    source: str,
    detail: str,
    customer_id: str | None = None,
    message_id: str | None = None,
) -> SmsConsentChange | None:
    """Opt `number` out (or back in); a no-op when it already is. Every customer with that number follows."""
    if await is_opted_out(session=session, number=number) == opted_out:
        return None
    now = utcnow()
    change = SmsConsentChange(
        number=number,
        customer_id=customer_id,
        opted_out=opted_out,
        source=source,
        detail=detail[:64],
        message_id=message_id,
        at=now,
    )
    session.add(change)
    owners = select(CustomerPhone.customer_id).where(CustomerPhone.e164 == number)
    await session.execute(
        update(Customer)
        .where((Customer.id.in_(owners)) | (Customer.id == customer_id))
        .values(sms_opt_out=opted_out)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    record_event(session, SmsConsentChanged(number, customer_id, opted_out, source, now))
    return change


async def consent_history(*, session: AsyncSession, customer_id: str, limit: int = 20) -> list[SmsConsentChange]:
    numbers = select(CustomerPhone.e164).where(CustomerPhone.customer_id == customer_id)
    return list(
        await session.scalars(
            select(SmsConsentChange)
            .where((SmsConsentChange.customer_id == customer_id) | SmsConsentChange.number.in_(numbers))
            .order_by(SmsConsentChange.at.desc())
            .limit(limit)
        )
    )


# --- the outbox ----------------------------------------------------------------------------------------------------


def check_body(body: str) -> str:
    text = (body or "").replace("\r\n", "\n").strip()
    if not text:
        raise ValidationFailed("The message is empty.", field="body")
    if len(text) > MAX_BODY:
        raise ValidationFailed(f"The message is longer than {MAX_BODY} characters.", field="body")
    return text


def queue_outbound(
    session: AsyncSession,
    *,
    to: str,
    sender: str,
    body: str,
    customer_id: str | None = None,
    conversation_id: str | None = None,
    author_id: str | None = None,
    due_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> SmsMessage:
    """Write an outbound message as `queued`: the outbox worker sends it after this transaction commits."""
    shape = sms_shape(body)
    now = utcnow()
    message = SmsMessage(
        id=new_id(),  # known before the flush: a caller may link to it at once
        direction="outbound",
        from_number=sender,
        to_number=to,
        body=body,
        status="queued",
        encoding=shape.encoding,
        segments=shape.segments,
        customer_id=customer_id,
        conversation_id=conversation_id,
        author_id=author_id,
        due_at=due_at or now,
        expires_at=expires_at,
        created_at=now,
    )
    session.add(message)
    return message


# --- inbound -------------------------------------------------------------------------------------------------------


async def customer_for_number(*, session: AsyncSession, number: str, region: str) -> str:
    """The customer with this number, or a new unknown contact holding it."""
    found = await find_customer_id_by_phone(session=session, number=number, region=region)
    if found is not None:
        return found
    customer = Customer(name=f"Unknown {number}", kind="person")
    customer.phones.append(CustomerPhone(e164=number, label="mobile", is_primary=True))
    session.add(customer)
    await session.flush()
    return customer.id


async def conversation_for(
    *, session: AsyncSession, customer_id: str | None, number: str, our_number: str, queue: str | None
) -> SmsConversation:
    """The open conversation with this number, or a new one in `queue`."""
    conversation = await session.scalar(
        select(SmsConversation)
        .where(SmsConversation.number == number, SmsConversation.status == "open")
        .order_by(SmsConversation.created_at.desc())
        .limit(1)
    )
    if conversation is None:
        conversation = SmsConversation(
            customer_id=customer_id, number=number, our_number=our_number, queue=queue, status="open"
        )
        session.add(conversation)
        await session.flush()
    elif conversation.customer_id is None:
        conversation.customer_id = customer_id
    return conversation


def normalize_number(raw: str, region: str) -> str | None:
    return raw if raw.startswith("+") and raw[1:].isdigit() else caller_id_to_e164(raw, region)


# --- what agents do ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConversationRow:
    conversation: SmsConversation
    customer_name: str | None
    assignee_name: str | None


async def _rows(session: AsyncSession, query: object) -> list[ConversationRow]:
    rows = await session.execute(query)  # type: ignore[call-overload]
    return [ConversationRow(c, name, assignee) for c, name, assignee in rows]


async def list_conversations(
    *, session: AsyncSession, actor: Actor, view: View, queue: str | None = None, limit: int = 100
) -> list[ConversationRow]:
    require_role(actor, *STAFF)
    assignee = User.__table__.alias("assignee")
    query = (
        select(SmsConversation, Customer.name, assignee.c.display_name)
        .outerjoin(Customer, Customer.id == SmsConversation.customer_id)
        .outerjoin(assignee, assignee.c.id == SmsConversation.assignee_id)
        .where(SmsConversation.status == "open")
        .order_by(SmsConversation.last_message_at.desc())
        .limit(limit)
    )
    if view == "unassigned":
        query = query.where(SmsConversation.assignee_id.is_(None))
    elif view == "mine":
        query = query.where(SmsConversation.assignee_id == actor.user_id)
    elif view == "queue":
        if not queue:
            raise ValidationFailed("Choose a queue.", field="queue")
        query = query.where(SmsConversation.queue == queue)
    return await _rows(session, query)


async def inbox_queues(*, session: AsyncSession, actor: Actor) -> list[str]:
    require_role(actor, *STAFF)
    found = await session.scalars(
        select(SmsConversation.queue)
        .where(SmsConversation.status == "open", SmsConversation.queue.is_not(None))
        .group_by(SmsConversation.queue)
        .order_by(SmsConversation.queue)
    )
    return [q for q in found if q]


async def open_counts(*, session: AsyncSession, actor: Actor) -> dict[str, int]:
    require_role(actor, *STAFF)
    unassigned = await session.scalar(
        select(func.count())
        .select_from(SmsConversation)
        .where(SmsConversation.status == "open", SmsConversation.assignee_id.is_(None))
    )
    mine = await session.scalar(
        select(func.count())
        .select_from(SmsConversation)
        .where(SmsConversation.status == "open", SmsConversation.assignee_id == actor.user_id)
    )
    return {"unassigned": int(unassigned or 0), "mine": int(mine or 0)}


async def get_conversation(
    *, session: AsyncSession, actor: Actor, conversation_id: str
) -> tuple[SmsConversation, list[SmsMessage]]:
    require_role(actor, *STAFF)
    conversation = await session.get(SmsConversation, conversation_id)
    if conversation is None:
        raise NotFound("No such conversation.", conversation_id=conversation_id)
    messages = list(
        await session.scalars(
            select(SmsMessage)
            .where(SmsMessage.conversation_id == conversation_id)
            .order_by(SmsMessage.created_at, SmsMessage.id)
            .limit(500)
        )
    )
    return conversation, messages


def _check_owner(actor: Actor, conversation: SmsConversation) -> None:
    """Agents work the unassigned conversations and their own; supervisors and admins any."""
    if actor.role in (Role.SUPERVISOR, Role.ADMIN):
        return
    if conversation.assignee_id not in (None, actor.user_id):
        raise PermissionDenied("This conversation is assigned to another agent.", conversation_id=conversation.id)


async def reply(
    *, session: AsyncSession, actor: Actor, conversation_id: str, body: str, sender: str | None = None
) -> SmsMessage:
    """Queue an agent's answer in the conversation; an unassigned conversation becomes the agent's."""
    require_role(actor, *STAFF)
    text = check_body(body)
    conversation = await session.get(SmsConversation, conversation_id, with_for_update=True)
    if conversation is None:
        raise NotFound("No such conversation.", conversation_id=conversation_id)
    _check_owner(actor, conversation)
    if conversation.status != "open":
        raise ConversationClosed("The conversation is closed.", conversation_id=conversation_id)
    if await is_opted_out(session=session, number=conversation.number):
        raise RecipientOptedOut(
            "The customer opted out of SMS (replied STOP); nothing can be sent until they text START.",
            number=conversation.number,
        )
    if conversation.assignee_id is None and actor.role is not Role.ADMIN:
        conversation.assignee_id = actor.user_id
    now = utcnow()
    message = queue_outbound(
        session,
        to=conversation.number,
        sender=sender or conversation.our_number,
        body=text,
        customer_id=conversation.customer_id,
        conversation_id=conversation.id,
        author_id=actor.user_id,
    )
    conversation.last_message_at = now
    conversation.last_body = text[:160]
    conversation.unread = 0
    await session.flush()
    return message


async def assign(
    *, session: AsyncSession, actor: Actor, conversation_id: str, assignee_id: str | None
) -> SmsConversation:
    """An agent takes an unassigned conversation (assignee = themselves); supervisors give it to anyone."""
    require_role(actor, *STAFF)
    conversation = await session.get(SmsConversation, conversation_id, with_for_update=True)
    if conversation is None:
        raise NotFound("No such conversation.", conversation_id=conversation_id)
    supervising = actor.role in (Role.SUPERVISOR, Role.ADMIN)
    if not supervising:
        if assignee_id != actor.user_id:
            raise PermissionDenied("Agents may only take a conversation themselves.", conversation_id=conversation_id)
        _check_owner(actor, conversation)
    if assignee_id is not None:
        user = await session.get(User, assignee_id)
        if user is None or not user.is_active or user.role not in (Role.AGENT.value, Role.SUPERVISOR.value):
            raise ValidationFailed("Assign the conversation to an active agent.", field="assignee_id")
    before = conversation.assignee_id
    conversation.assignee_id = assignee_id
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="sms_conversation",
        entity_id=conversation.id,
        before={"assignee_id": before},
        after={"assignee_id": assignee_id},
    )
    await session.flush()
    return conversation


async def close(*, session: AsyncSession, actor: Actor, conversation_id: str) -> SmsConversation:
    require_role(actor, *STAFF)
    conversation = await session.get(SmsConversation, conversation_id, with_for_update=True)
    if conversation is None:
        raise NotFound("No such conversation.", conversation_id=conversation_id)
    _check_owner(actor, conversation)
    if conversation.status == "open":
        conversation.status = "closed"
        conversation.closed_at = utcnow()
        conversation.unread = 0
        await session.flush()
    return conversation


async def customer_conversation(
    *, session: AsyncSession, actor: Actor, customer_id: str, limit: int = 50
) -> tuple[SmsConversation | None, list[SmsMessage]]:
    """The customer's newest conversation and its messages, for the 360 page."""
    require_role(actor, *STAFF)
    conversation = await session.scalar(
        select(SmsConversation)
        .where(SmsConversation.customer_id == customer_id)
        .order_by((SmsConversation.status == "open").desc(), SmsConversation.last_message_at.desc())
        .limit(1)
    )
    if conversation is None:
        return None, []
    messages = list(
        await session.scalars(
            select(SmsMessage)
            .where(SmsMessage.conversation_id == conversation.id)
            .order_by(SmsMessage.created_at.desc())
            .limit(limit)
        )
    )
    return conversation, list(reversed(messages))
