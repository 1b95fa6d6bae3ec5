"""Twilio's webhooks, once their signature is checked: an inbound text becomes a message in the customer's
conversation (opt-out, opt-in and help keywords acted on), a status callback moves an outbound message on. Both are
idempotent on MessageSid, since Twilio retries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from twilio.request_validator import RequestValidator

from crm_core.db import record_event, utcnow
from crm_core.errors import ValidationFailed
from crm_core.sms.events import SmsReceived, SmsStatusChanged
from crm_core.sms.models import SmsMessage
from crm_core.sms.segments import sms_shape
from crm_core.sms.service import (
    conversation_for,
    customer_for_number,
    is_opted_out,
    normalize_number,
    queue_outbound,
    record_consent,
)
from crm_core.tickets.csat import record_sms_reply
from sms_gateway.keywords import Keyword, keyword_of
from sms_gateway.outbox import STATUS_RANK

# carrier delivery errors in our words (the provider's code is kept beside)
DELIVERY_ERRORS = {30003: "unreachable", 30005: "unknown_number", 30006: "landline", 30007: "filtered"}
CALLBACK_STATUSES = frozenset({"queued", "accepted", "sending", "sent", "delivered", "undelivered", "failed"})


def signature_valid(auth_token: str, url: str, params: Mapping[str, str], signature: str) -> bool:
    """Whether Twilio signed this request (HMAC of our public URL and the posted fields with the auth token)."""
    return bool(signature) and bool(RequestValidator(auth_token).validate(url, dict(params), signature))


@dataclass(frozen=True, slots=True)
class InboundOutcome:
    message_id: str
    conversation_id: str | None
    duplicate: bool
    keyword: Keyword | None = None


def _sid(params: Mapping[str, str]) -> str:
    sid = (params.get("MessageSid") or params.get("SmsSid") or "").strip()
    if not sid or len(sid) > 64:
        raise ValidationFailed("MessageSid is missing.", field="MessageSid")
    return sid


async def receive_sms(
    *, session: AsyncSession, params: Mapping[str, str], region: str, queue: str | None, help_text: str
) -> InboundOutcome:
    sid = _sid(params)
    known = await session.scalar(select(SmsMessage).where(SmsMessage.provider_sid == sid))
    if known is not None:
        return InboundOutcome(known.id, known.conversation_id, duplicate=True)
    number = normalize_number((params.get("From") or "").strip(), region)
    if number is None:
        raise ValidationFailed("From is not a phone number.", field="From")
    our_number = (params.get("To") or "").strip()[:40] or (params.get("MessagingServiceSid") or "")[:40]
    body = (params.get("Body") or "")[:1600]
    customer_id = await customer_for_number(session=session, number=number, region=region)
    conversation = await conversation_for(
        session=session, customer_id=customer_id, number=number, our_number=our_number, queue=queue
    )
    now = utcnow()
    shape = sms_shape(body)
    message = SmsMessage(
        direction="inbound",
        from_number=number,
        to_number=our_number[:20],
        body=body,
        status="received",
        provider_sid=sid,
        customer_id=customer_id,
        conversation_id=conversation.id,
        encoding=shape.encoding,
        segments=shape.segments,
        created_at=now,
    )
    session.add(message)
    conversation.last_message_at = now
    conversation.last_body = body[:160]
    conversation.unread += 1
    await session.flush()
    if await record_sms_reply(session=session, number=number, body=body, now=now) is not None:
        conversation.unread -= 1  # a CSAT score, stored on its ticket: nothing for an agent to read
    found = keyword_of(body)
    keyword = found[0] if found else None
    if found is not None:
        keyword, word = found
        if keyword is Keyword.OPT_OUT or keyword is Keyword.OPT_IN:
            await record_consent(
                session=session,
                number=number,
                opted_out=keyword is Keyword.OPT_OUT,
                source="keyword",
                detail=word,
                customer_id=customer_id,
                message_id=message.id,
            )
        elif keyword is Keyword.HELP and help_text and not await is_opted_out(session=session, number=number):
            queue_outbound(
                session,
                to=number,
                sender=our_number,
                body=help_text,
                customer_id=customer_id,
                conversation_id=conversation.id,
            )
    record_event(
        session,
        SmsReceived(
            message_id=message.id,
            conversation_id=conversation.id,
            customer_id=customer_id,
            number=number,
            body=body,
            queue=conversation.queue,
            assignee_id=conversation.assignee_id,
            received_at=now,
        ),
    )
    return InboundOutcome(message.id, conversation.id, duplicate=False, keyword=keyword)


async def record_status(*, session: AsyncSession, params: Mapping[str, str], ref: str | None) -> bool:
    """Apply a status callback; False when it changes nothing (a retry, an older status, an unknown message)."""
    sid = _sid(params)
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    if status not in CALLBACK_STATUSES:
        raise ValidationFailed("MessageStatus is not a message status.", field="MessageStatus")
    row = await session.scalar(select(SmsMessage).where(SmsMessage.provider_sid == sid).with_for_update())
    if row is None and ref:
        candidate = await session.get(SmsMessage, ref[:32], with_for_update=True)
        if candidate is not None and candidate.direction == "outbound" and candidate.provider_sid in (None, sid):
            row = candidate
    if row is None:
        return False
    if row.provider_sid is None:
        row.provider_sid = sid
    if status in ("queued", "accepted", "sending"):
        status = "accepted"
    if STATUS_RANK.get(status, 0) <= STATUS_RANK.get(row.status, 0) and row.status != "sending":
        return False
    row.status = status
    row.updated_at = utcnow()
    code = (params.get("ErrorCode") or "").strip()
    if status in ("undelivered", "failed") and code.isdigit():
        row.provider_error = int(code)
        row.error_code = DELIVERY_ERRORS.get(int(code), "carrier_error")
        row.error_detail = f"The carrier reported error {code}."
    await session.flush()
    record_event(session, SmsStatusChanged(row.id, row.conversation_id, row.status, row.error_code, row.updated_at))
    return True
