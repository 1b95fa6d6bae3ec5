"""Automatic texts, each switchable: missed-call text-back (abandoned calls in the call log), a text when a ticket is
opened or resolved, a thank-you/feedback request some days after a call. Each occasion (a call, a ticket's event) is
texted at most once (a unique row), never to an opted-out number, never in the recipient's quiet hours, and the
message is on the customer's timeline (it is an SMS of theirs)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.calls.models import CallLog
from crm_core.customers.models import Customer, CustomerPhone
from crm_core.db import utcnow
from crm_core.errors import NotFound, ValidationFailed
from crm_core.sms.campaigns import next_allowed, quiet_begins, recipient_zone
from crm_core.sms.models import SmsAutomation, SmsAutomationSend
from crm_core.sms.senders import country_defaults, pick_sender
from crm_core.sms.service import check_body, is_opted_out, normalize_number, queue_outbound
from crm_core.sms.templates import customer_fields, render, template_fields
from crm_core.tickets.models import Ticket
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

AUTOMATION_NAMES = {
    "missed_call": "Missed-call text-back",
    "ticket_created": "Ticket opened",
    "ticket_resolved": "Ticket resolved",
    "feedback": "Thank-you and feedback request",
}
DEFAULT_TEMPLATES = {
    "missed_call": "Hi {first_name}, sorry we missed your call. Reply here or call us back. Reply STOP to opt out.",
    "ticket_created": "Hi {first_name}, we opened ticket #{ticket_number} for you and will be in touch.",
    "ticket_resolved": "Hi {first_name}, ticket #{ticket_number} is resolved. Reply if anything is still wrong.",
    "feedback": "Thank you for calling us, {first_name}. How did we do? Reply with a score from 1 to 5.",
}
FIELDS_OFFERED = {
    "missed_call": {"first_name", "last_name", "name"},
    "ticket_created": {"first_name", "last_name", "name", "ticket_number"},
    "ticket_resolved": {"first_name", "last_name", "name", "ticket_number"},
    "feedback": {"first_name", "last_name", "name"},
}
QUIET_START, QUIET_END = 21, 9  # as campaigns: nothing automatic from 21:00 to 09:00 in the recipient's zone
LOOKBACK = timedelta(days=2)  # occasions older than this when an automation is switched on are left alone


@dataclass(frozen=True, slots=True)
class AutomationView:
    name: str
    title: str
    enabled: bool
    template: str
    delay_days: int
    updated_at: datetime | None


async def list_automations(*, session: AsyncSession) -> list[AutomationView]:
    stored = {a.name: a for a in await session.scalars(select(SmsAutomation))}
    views = []
    for name, title in AUTOMATION_NAMES.items():
        row = stored.get(name)
        views.append(
            AutomationView(
                name,
                title,
                bool(row and row.enabled),
                row.template if row else DEFAULT_TEMPLATES[name],
                row.delay_days if row else (3 if name == "feedback" else 0),
                row.updated_at if row else None,
            )
        )
    return views


async def save_automation(
    *,
    session: AsyncSession,
    actor: Actor,
    name: str,
    enabled: bool,
    template: str,
    delay_days: int,
    now: datetime | None = None,
) -> SmsAutomation:
    require_role(actor, Role.ADMIN)
    if name not in AUTOMATION_NAMES:
        raise NotFound("No such automation.", name=name)
    text = check_body(template)
    unknown = [f for f in template_fields(text) if f not in FIELDS_OFFERED[name]]
    if unknown:
        offered = ", ".join("{" + f + "}" for f in sorted(FIELDS_OFFERED[name]))
        raise ValidationFailed(
            f"{', '.join('{' + f + '}' for f in unknown)} has no value here; use {offered}.", field="template"
        )
    if not 0 <= delay_days <= 90:
        raise ValidationFailed("The delay is 0 to 90 days.", field="delay_days")
    row = await session.get(SmsAutomation, name, with_for_update=True)
    before = {"enabled": row.enabled, "template": row.template, "delay_days": row.delay_days} if row else None
    if row is None:
        row = SmsAutomation(name=name, template=text)
        session.add(row)
    if enabled and not row.enabled:
        row.updated_at = now or utcnow()  # occasions from about now on (and LOOKBACK before) are texted
    row.enabled, row.template, row.delay_days = enabled, text, delay_days
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create" if before is None else "update",
        entity_type="sms_automation",
        entity_id=name,
        before=before,
        after={"enabled": enabled, "template": text, "delay_days": delay_days},
    )
    return row


async def recent_sends(*, session: AsyncSession, limit: int = 50) -> list[SmsAutomationSend]:
    return list(
        await session.scalars(select(SmsAutomationSend).order_by(SmsAutomationSend.created_at.desc()).limit(limit))
    )


async def _customer_number(session: AsyncSession, customer_id: str) -> str | None:
    return await session.scalar(
        select(CustomerPhone.e164)
        .where(CustomerPhone.customer_id == customer_id)
        .order_by(CustomerPhone.is_primary.desc(), CustomerPhone.e164)
        .limit(1)
    )


async def text_for_occasion(
    *,
    session: AsyncSession,
    automation: SmsAutomation,
    occasion: str,
    customer_id: str | None,
    number: str | None,
    extra: dict[str, str],
    fallback_sender: str | None,
    now: datetime,
) -> SmsAutomationSend | None:
    """Text one occasion once: None when it was handled before; else the record of what was done."""
    customer = await session.get(Customer, customer_id) if customer_id else None
    if number is None and customer is not None:
        number = await _customer_number(session, customer.id)
    record = SmsAutomationSend(automation=automation.name, occasion=occasion[:100], customer_id=customer_id)
    try:
        async with session.begin_nested():
            record.outcome = "pending"
            session.add(record)
            await session.flush()
    except IntegrityError:
        return None  # handled already (by us earlier or by another worker)
    if not number:
        record.outcome, record.detail = "no_number", "The customer has no phone number."
        return record
    if await is_opted_out(session=session, number=number) or (customer is not None and customer.sms_opt_out):
        record.outcome, record.detail = "opted_out", "The number opted out of SMS."
        return record
    values = customer_fields(customer.name, customer.custom_fields) if customer else {}
    values.update(extra)
    try:
        rendered = render(automation.template, values)
    except ValidationFailed as exc:
        record.outcome, record.detail = "failed", exc.message[:255]
        return record
    sender = pick_sender(number, sender="", pool=[], defaults=await country_defaults(session=session))
    sender = sender or fallback_sender
    if not sender:
        record.outcome, record.detail = "failed", "No sender for this number's country."
        return record
    zone = recipient_zone(number, customer.timezone if customer else None)
    due = next_allowed(now, zone, QUIET_START, QUIET_END) or now
    message = queue_outbound(
        session,
        to=number,
        sender=sender,
        body=rendered.body,
        customer_id=customer.id if customer else None,
        due_at=due,
        expires_at=quiet_begins(due, zone, QUIET_START, QUIET_END),
    )
    record.message_id, record.outcome = message.id, "queued"
    return record


async def run_automations(
    *,
    session: AsyncSession,
    now: datetime | None = None,
    region: str = "US",
    fallback_sender: str | None = None,
    limit: int = 200,
) -> list[SmsAutomationSend]:
    """Find each switched-on automation's new occasions and text them (the caller commits; a unique row per occasion
    keeps two workers, or two runs, from texting one twice)."""
    now = now or utcnow()
    done: list[SmsAutomationSend] = []
    for automation in await session.scalars(select(SmsAutomation).where(SmsAutomation.enabled.is_(True))):
        since = max(automation.updated_at - LOOKBACK, now - LOOKBACK)
        handled = select(SmsAutomationSend.occasion).where(SmsAutomationSend.automation == automation.name)
        occasions: list[tuple[str, str | None, str | None, dict[str, str]]] = []
        if automation.name == "missed_call":
            calls = await session.scalars(
                select(CallLog)
                .where(
                    CallLog.outcome.in_(("abandoned", "missed")),
                    CallLog.direction == "inbound",
                    CallLog.ended_at >= since,
                    ("call:" + CallLog.linkedid).not_in(handled),
                )
                .order_by(CallLog.ended_at)
                .limit(limit)
            )
            for call in calls:
                number = normalize_number(call.caller_number, region) if call.caller_number else None
                occasions.append((f"call:{call.linkedid}", call.customer_id, number, {}))
        elif automation.name == "feedback":
            due = now - timedelta(days=automation.delay_days)
            calls = await session.scalars(
                select(CallLog)
                .where(
                    CallLog.outcome == "answered",
                    CallLog.customer_id.is_not(None),
                    CallLog.ended_at <= due,
                    CallLog.ended_at >= since - timedelta(days=automation.delay_days),
                    ("call:" + CallLog.linkedid).not_in(handled),
                )
                .order_by(CallLog.ended_at)
                .limit(limit)
            )
            for call in calls:
                occasions.append((f"call:{call.linkedid}", call.customer_id, None, {}))
        else:
            event = "created" if automation.name == "ticket_created" else "resolved"
            moment = Ticket.created_at if event == "created" else Ticket.resolved_at
            tickets = await session.scalars(
                select(Ticket)
                .where(
                    Ticket.customer_id.is_not(None),
                    moment >= since,
                    ("ticket:" + Ticket.id + ":" + event).not_in(handled),
                    *([Ticket.status.in_(("resolved", "closed"))] if event == "resolved" else []),
                )
                .order_by(moment)
                .limit(limit)
            )
            for ticket in tickets:
                occasions.append(
                    (f"ticket:{ticket.id}:{event}", ticket.customer_id, None, {"ticket_number": str(ticket.number)})
                )
        for occasion, customer_id, number, extra in occasions:
            record = await text_for_occasion(
                session=session,
                automation=automation,
                occasion=occasion,
                customer_id=customer_id,
                number=number,
                extra=extra,
                fallback_sender=fallback_sender,
                now=now,
            )
            if record is not None:
                done.append(record)
    await session.flush()
    return done
