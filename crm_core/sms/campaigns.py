"""SMS campaigns (marketers): the audience (a segment or chosen customers, one message per number, opted-out numbers
kept out), start, pause, resume and cancel, quiet hours in each recipient's time zone, and per-recipient status."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.customers.models import Customer, CustomerPhone
from crm_core.db import utcnow
from crm_core.errors import Conflict, NotFound, ValidationFailed
from crm_core.segments.service import segment_members
from crm_core.sms.models import SmsCampaign, SmsCampaignRecipient, SmsMessage
from crm_core.sms.service import check_body, opted_out_numbers
from crm_core.sms.templates import template_fields
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

TRANSITIONS = {
    "start": ({"draft"}, "running"),
    "pause": ({"running"}, "paused"),
    "resume": ({"paused"}, "running"),
    "cancel": ({"draft", "running", "paused"}, "cancelled"),
}


def recipient_zone(number: str, customer_zone: str | None = None) -> ZoneInfo:
    """The recipient's time zone: the customer's own when set, else the number's (phonenumbers), else UTC."""
    names: list[str] = [customer_zone] if customer_zone else []
    try:
        names += list(phone_timezones.time_zones_for_number(phonenumbers.parse(number)))
    except phonenumbers.NumberParseException:
        pass
    for name in names:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def next_allowed(now: datetime, zone: ZoneInfo, quiet_start: int, quiet_end: int) -> datetime | None:
    """None when `now` is outside the quiet hours in `zone`; else the UTC moment they end."""
    if quiet_start == quiet_end:
        return None
    local = now.astimezone(zone)
    hour = local.hour
    quiet = quiet_start <= hour < quiet_end if quiet_start < quiet_end else hour >= quiet_start or hour < quiet_end
    if not quiet:
        return None
    day = local.date() if hour < quiet_end else local.date() + timedelta(days=1)
    return datetime.combine(day, time(quiet_end), tzinfo=zone).astimezone(now.tzinfo)


def quiet_begins(now: datetime, zone: ZoneInfo, quiet_start: int, quiet_end: int) -> datetime | None:
    """When the next quiet hours begin in `zone` (UTC), for a moment outside them; None without quiet hours."""
    if quiet_start == quiet_end:
        return None
    local = now.astimezone(zone)
    begins = datetime.combine(local.date(), time(quiet_start), tzinfo=zone)
    if begins <= local:
        begins = datetime.combine(local.date() + timedelta(days=1), time(quiet_start), tzinfo=zone)
    return begins.astimezone(now.tzinfo)


async def create_campaign(
    *,
    session: AsyncSession,
    actor: Actor,
    name: str,
    template: str,
    sender: str,
    segment_id: str | None = None,
    customer_ids: list[str] | None = None,
    quiet_start_hour: int = 21,
    quiet_end_hour: int = 9,
) -> SmsCampaign:
    require_role(actor, Role.MARKETER)
    if not name.strip():
        raise ValidationFailed("A campaign needs a name.", field="name")
    check_body(template)
    template_fields(template)
    if not sender.strip():
        raise ValidationFailed("Choose the sender (a number or a Messaging Service).", field="sender")
    if not (0 <= quiet_start_hour <= 23 and 0 <= quiet_end_hour <= 23):
        raise ValidationFailed("Quiet hours are whole hours from 0 to 23.", field="quiet_start_hour")
    if segment_id:
        members = await segment_members(session=session, actor=actor, segment_id=segment_id)
    elif customer_ids:
        members = list(dict.fromkeys(customer_ids))
    else:
        raise ValidationFailed("Choose a segment or customers.", field="segment_id")
    campaign = SmsCampaign(
        name=name.strip()[:200],
        template=template,
        sender=sender.strip()[:40],
        quiet_start_hour=quiet_start_hour,
        quiet_end_hour=quiet_end_hour,
        created_by=actor.user_id,
    )
    session.add(campaign)
    await session.flush()
    await add_recipients(session=session, campaign=campaign, customer_ids=members)
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="sms_campaign",
        entity_id=campaign.id,
        after={"name": campaign.name, "recipients": len(members)},
    )
    return campaign


async def add_recipients(*, session: AsyncSession, campaign: SmsCampaign, customer_ids: list[str]) -> int:
    """One recipient per number (each customer's primary phone), de-duplicated; opted-out numbers are listed as
    `opted_out` and never sent to. Returns how many will be sent to."""
    seen: set[str] = set(
        await session.scalars(
            select(SmsCampaignRecipient.number).where(SmsCampaignRecipient.campaign_id == campaign.id)
        )
    )
    sendable = 0
    for start in range(0, len(customer_ids), 500):
        chunk = customer_ids[start : start + 500]
        phones = await session.execute(
            select(CustomerPhone.customer_id, CustomerPhone.e164, Customer.sms_opt_out)
            .join(Customer, Customer.id == CustomerPhone.customer_id)
            .where(CustomerPhone.customer_id.in_(chunk), Customer.merged_into_id.is_(None))
            .order_by(CustomerPhone.customer_id, CustomerPhone.is_primary.desc(), CustomerPhone.e164)
        )
        first: dict[str, tuple[str, bool]] = {}
        for customer_id, number, opted_out in phones:
            first.setdefault(customer_id, (number, bool(opted_out)))
        numbers = [n for n, _ in first.values()]
        out = await opted_out_numbers(session=session, numbers=numbers)
        rows = []
        for customer_id in chunk:
            if customer_id not in first:
                continue
            number, flagged = first[customer_id]
            if number in seen:
                continue
            seen.add(number)
            opted_out = flagged or number in out
            sendable += 0 if opted_out else 1
            rows.append(
                SmsCampaignRecipient(
                    campaign_id=campaign.id,
                    customer_id=customer_id,
                    number=number,
                    status="opted_out" if opted_out else "pending",
                    reason="The number opted out of SMS." if opted_out else None,
                )
            )
        session.add_all(rows)
        await session.flush()
    return sendable


async def change_campaign(*, session: AsyncSession, actor: Actor, campaign_id: str, action: str) -> SmsCampaign:
    """start, pause, resume or cancel; cancelling skips every recipient not handed to the outbox yet and withdraws
    the campaign's messages still waiting in it."""
    require_role(actor, Role.MARKETER)
    if action not in TRANSITIONS:
        raise ValidationFailed("The action is one of start, pause, resume, cancel.", field="action")
    campaign = await session.get(SmsCampaign, campaign_id, with_for_update=True)
    if campaign is None:
        raise NotFound("No such campaign.", campaign_id=campaign_id)
    allowed, target = TRANSITIONS[action]
    if campaign.status not in allowed:
        raise Conflict(f"A {campaign.status} campaign cannot {action}.", status=campaign.status)
    before = campaign.status
    campaign.status = target
    now = utcnow()
    if action == "start":
        campaign.started_at = now
    if action == "cancel":
        campaign.finished_at = now
        await session.execute(
            update(SmsCampaignRecipient)
            .where(SmsCampaignRecipient.campaign_id == campaign.id, SmsCampaignRecipient.status == "pending")
            .values(status="skipped", reason="The campaign was cancelled.")
        )
        waiting = select(SmsCampaignRecipient.message_id).where(
            SmsCampaignRecipient.campaign_id == campaign.id, SmsCampaignRecipient.message_id.is_not(None)
        )
        await session.execute(
            update(SmsMessage)
            .where(SmsMessage.id.in_(waiting), SmsMessage.status == "queued")
            .values(status="failed", error_code="cancelled", error_detail="The campaign was cancelled.")
            .execution_options(synchronize_session=False)
        )
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="sms_campaign",
        entity_id=campaign.id,
        before={"status": before},
        after={"status": target},
    )
    await session.flush()
    return campaign


async def campaign_progress(*, session: AsyncSession, actor: Actor, campaign_id: str) -> dict[str, int]:
    """How many recipients are in each status; a recipient handed to the outbox counts as its message's status."""
    require_role(actor, Role.MARKETER, Role.SUPERVISOR)
    if await session.get(SmsCampaign, campaign_id) is None:
        raise NotFound("No such campaign.", campaign_id=campaign_id)
    status = func.coalesce(SmsMessage.status, SmsCampaignRecipient.status)
    rows = await session.execute(
        select(status, func.count())
        .select_from(SmsCampaignRecipient)
        .outerjoin(SmsMessage, SmsMessage.id == SmsCampaignRecipient.message_id)
        .where(SmsCampaignRecipient.campaign_id == campaign_id)
        .group_by(status)
    )
    return {str(name): int(count) for name, count in rows}
