"""SMS campaigns (marketers): the audience (a segment or chosen customers, one message per number, opted-out numbers
kept out), start, pause, resume and cancel, quiet hours in each recipient's time zone, and per-recipient status."""

from __future__ import annotations

import csv
import functools
import io
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from crm_core.audit.service import record_audit
from crm_core.customers.models import Customer, CustomerPhone
from crm_core.db import new_id, utcnow
from crm_core.errors import Conflict, NotFound, ValidationFailed
from crm_core.segments.models import Segment
from crm_core.segments.service import segment_member_query, segment_members
from crm_core.sms.models import SmsCampaign, SmsCampaignRecipient, SmsConsentChange, SmsMessage
from crm_core.sms.senders import campaign_senders, country_defaults, pick_sender, sender_prices
from crm_core.sms.service import check_body, normalize_number, opted_out_numbers
from crm_core.sms.templates import customer_fields, render, template_fields
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

_MERGE_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
TRANSITIONS = {
    "start": ({"draft"}, "running"),
    "pause": ({"running"}, "paused"),
    "resume": ({"paused"}, "running"),
    "cancel": ({"draft", "running", "paused"}, "cancelled"),
}


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    """A zone by name, None when unknown (a miss is remembered too: looking one up again reads the tz database)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@functools.lru_cache(maxsize=65_536)
def _number_zones(number: str) -> tuple[str, ...]:
    try:
        return tuple(phone_timezones.time_zones_for_number(phonenumbers.parse(number)))
    except phonenumbers.NumberParseException:
        return ()


def recipient_zone(number: str, customer_zone: str | None = None) -> ZoneInfo:
    """The recipient's time zone: the customer's own when set, else the number's (phonenumbers), else UTC."""
    for name in ((customer_zone,) if customer_zone else ()) + _number_zones(number):
        zone = _zone(name)
        if zone is not None:
            return zone
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


@dataclass(frozen=True, slots=True)
class CsvAudience:
    """The numbers of an uploaded CSV (E.164, de-duplicated) with each row's merge values, and the rows refused."""

    rows: list[tuple[str, dict[str, str]]]
    problems: list[tuple[int, str]]
    duplicates: int


MAX_CSV_ROWS = 200_000


def parse_audience_csv(text: str, *, region: str) -> CsvAudience:
    """A CSV with a `phone` column (other columns become merge fields, like first_name or promo): each bad row is
    reported with its line and why, duplicates of a number are counted and dropped; nothing is stored."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    headers = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
    phone_column = next((h for h in ("phone", "number", "mobile", "phone_number") if h in headers), None)
    if phone_column is None:
        raise ValidationFailed("The CSV needs a header row with a phone column.", field="csv")
    reader.fieldnames = headers
    rows: list[tuple[str, dict[str, str]]] = []
    problems: list[tuple[int, str]] = []
    seen: set[str] = set()
    duplicates = 0
    for line, record in enumerate(reader, start=2):
        if len(rows) + len(problems) >= MAX_CSV_ROWS:
            raise ValidationFailed(f"The CSV has more than {MAX_CSV_ROWS} rows.", field="csv")
        if None in record:
            problems.append((line, "The row has more cells than the header."))
            continue
        raw = (record.get(phone_column) or "").strip()
        if not raw:
            problems.append((line, "No phone number."))
            continue
        number = normalize_number(raw, region)
        if number is not None:
            try:
                possible = phonenumbers.is_possible_number(phonenumbers.parse(number))
            except phonenumbers.NumberParseException:
                possible = False
            number = number if possible else None
        if number is None:
            problems.append((line, f"{raw[:40]!r} is not a valid phone number."))
            continue
        if number in seen:
            duplicates += 1
            continue
        seen.add(number)
        values = {
            k: v.strip()[:200]
            for k, v in record.items()
            if k and k != phone_column and isinstance(v, str) and v.strip() and _MERGE_KEY.match(k)
        }
        rows.append((number, values))
    if not rows and not problems:
        raise ValidationFailed("The CSV has no rows.", field="csv")
    return CsvAudience(rows, problems, duplicates)


async def create_campaign(
    *,
    session: AsyncSession,
    actor: Actor,
    name: str,
    template: str,
    sender: str = "",
    sender_pool: list[str] | None = None,
    segment_id: str | None = None,
    customer_ids: list[str] | None = None,
    csv_audience: CsvAudience | None = None,
    quiet_start_hour: int = 21,
    quiet_end_hour: int = 9,
    scheduled_at: datetime | None = None,
) -> SmsCampaign:
    """A draft campaign with its recipients written (set-based: one INSERT … SELECT for a segment), one per number,
    opted-out numbers listed as such and never sent to. Senders are checked first (A2P 10DLC and all)."""
    require_role(actor, Role.MARKETER)
    if not name.strip():
        raise ValidationFailed("A campaign needs a name.", field="name")
    check_body(template)
    template_fields(template)
    if not (0 <= quiet_start_hour <= 23 and 0 <= quiet_end_hour <= 23):
        raise ValidationFailed("Quiet hours are whole hours from 0 to 23.", field="quiet_start_hour")
    if scheduled_at is not None and scheduled_at.tzinfo is None:
        raise ValidationFailed("The schedule needs a time zone.", field="scheduled_at")
    one, pool, _rows = await campaign_senders(session=session, sender=sender, pool=sender_pool or [])
    members: list[str] | Select[str]
    if segment_id:
        segment = await session.get(Segment, segment_id)
        query = await segment_member_query(session=session, actor=actor, segment_id=segment_id)
        members = (
            query if query is not None else await segment_members(session=session, actor=actor, segment_id=segment_id)
        )
        audience = f"Segment: {segment.name}" if segment else "Segment"
    elif customer_ids:
        members = list(dict.fromkeys(customer_ids))
        audience = f"{len(members)} chosen customers"
    elif csv_audience is not None:
        members = []
        audience = f"CSV: {len(csv_audience.rows)} numbers"
    else:
        raise ValidationFailed("Choose a segment, customers or a CSV.", field="segment_id")
    campaign = SmsCampaign(
        name=name.strip()[:200],
        template=template,
        sender=one[:40],
        sender_pool=pool,
        scheduled_at=scheduled_at,
        audience=audience[:200],
        audience_report=(
            {
                "problems": [list(p) for p in csv_audience.problems[:1000]],
                "bad": len(csv_audience.problems),
                "duplicates": csv_audience.duplicates,
            }
            if csv_audience is not None
            else None
        ),
        quiet_start_hour=quiet_start_hour,
        quiet_end_hour=quiet_end_hour,
        created_by=actor.user_id,
    )
    session.add(campaign)
    await session.flush()
    if csv_audience is not None:
        sendable = await add_csv_recipients(session=session, campaign=campaign, audience=csv_audience)
    else:
        sendable = await add_recipients(session=session, campaign=campaign, customer_ids=members)
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="sms_campaign",
        entity_id=campaign.id,
        after={"name": campaign.name, "audience": audience, "sendable": sendable},
    )
    return campaign


def _new_id_sql(dialect: str) -> ColumnElement[str]:
    if dialect == "postgresql":
        return func.replace(cast(func.gen_random_uuid(), String), "-", "")
    return func.lower(func.hex(func.randomblob(16)))


def _opted_out_numbers_query() -> Select[str]:
    """Numbers whose latest consent change is an opt-out."""
    newer = aliased(SmsConsentChange)
    return select(SmsConsentChange.number).where(
        SmsConsentChange.opted_out.is_(True),
        ~exists().where(newer.number == SmsConsentChange.number, newer.at > SmsConsentChange.at),
    )


async def add_recipients(*, session: AsyncSession, campaign: SmsCampaign, customer_ids: list[str] | Select[str]) -> int:
    """One recipient per number (each customer's primary phone), de-duplicated; opted-out numbers are listed as
    `opted_out` and never sent to. Set-based: one INSERT … SELECT per 5,000 ids (or one for a segment's query).
    Returns how many will be sent to."""
    dialect = session.get_bind().dialect.name
    due = campaign.scheduled_at or utcnow()
    chunks: list[Any] = (
        [customer_ids]
        if not isinstance(customer_ids, list)
        else [customer_ids[i : i + 5000] for i in range(0, len(customer_ids), 5000)]
    )
    table = SmsCampaignRecipient.__table__
    for chunk in chunks:
        phones = (
            select(
                CustomerPhone.customer_id,
                CustomerPhone.e164,
                Customer.sms_opt_out,
                func.row_number()
                .over(
                    partition_by=CustomerPhone.customer_id,
                    order_by=(CustomerPhone.is_primary.desc(), CustomerPhone.e164),
                )
                .label("nth"),
            )
            .join(Customer, Customer.id == CustomerPhone.customer_id)
            .where(CustomerPhone.customer_id.in_(chunk), Customer.merged_into_id.is_(None))
            .subquery()
        )
        first = (
            select(
                phones.c.customer_id,
                phones.c.e164,
                phones.c.sms_opt_out,
                func.row_number().over(partition_by=phones.c.e164, order_by=phones.c.customer_id).label("nth_number"),
            )
            .where(phones.c.nth == 1)
            .subquery()
        )
        out = or_(first.c.sms_opt_out.is_(True), first.c.e164.in_(_opted_out_numbers_query()))
        rows = select(
            _new_id_sql(dialect),
            literal(campaign.id, String),
            first.c.customer_id,
            first.c.e164,
            case((out, "opted_out"), else_="pending"),
            case((out, "The number opted out of SMS."), else_=null()),
            literal(due, table.c.due_at.type),
        ).where(first.c.nth_number == 1)
        # a number already listed (from an earlier chunk) is skipped by the unique (campaign, number) index; a NOT
        # EXISTS probe would walk the rows this very statement adds to that index, quadratic in the audience
        make_insert = pg_insert if dialect == "postgresql" else sqlite_insert
        await session.execute(
            make_insert(SmsCampaignRecipient)
            .from_select(["id", "campaign_id", "customer_id", "number", "status", "reason", "due_at"], rows)
            .on_conflict_do_nothing(index_elements=["campaign_id", "number"])
        )
    sendable = int(
        await session.scalar(
            select(func.count())
            .select_from(SmsCampaignRecipient)
            .where(SmsCampaignRecipient.campaign_id == campaign.id, SmsCampaignRecipient.status == "pending")
        )
        or 0
    )
    if dialect == "postgresql" and sendable >= 10_000:
        # fresh statistics: with a planner still believing the table small, every dispatcher pass would read and
        # sort the whole audience instead of walking the (status, due_at) index
        await session.execute(text("ANALYZE sms_campaign_recipients"))
    return sendable


async def add_csv_recipients(*, session: AsyncSession, campaign: SmsCampaign, audience: CsvAudience) -> int:
    """The CSV's numbers as recipients (a number that is a customer's is linked to that customer), in batches."""
    due = campaign.scheduled_at or utcnow()
    sendable = 0
    for start in range(0, len(audience.rows), 2000):
        chunk = audience.rows[start : start + 2000]
        numbers = [n for n, _v in chunk]
        owners: dict[str, tuple[str, bool]] = {}
        found = await session.execute(
            select(CustomerPhone.e164, CustomerPhone.customer_id, Customer.sms_opt_out)
            .join(Customer, Customer.id == CustomerPhone.customer_id)
            .where(CustomerPhone.e164.in_(numbers), Customer.merged_into_id.is_(None))
            .order_by(CustomerPhone.customer_id)
        )
        for number, customer_id, flagged in found:
            owners.setdefault(number, (customer_id, bool(flagged)))
        out = await opted_out_numbers(session=session, numbers=numbers)
        values = []
        for number, merge in chunk:
            owner = owners.get(number)
            opted = number in out or bool(owner and owner[1])
            sendable += 0 if opted else 1
            values.append(
                {
                    "id": new_id(),
                    "campaign_id": campaign.id,
                    "customer_id": owner[0] if owner else None,
                    "number": number,
                    "status": "opted_out" if opted else "pending",
                    "reason": "The number opted out of SMS." if opted else None,
                    "due_at": due,
                    "merge_values": merge or None,
                }
            )
        await session.execute(insert(SmsCampaignRecipient), values)
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
    if action in ("start", "resume"):  # a sender may have been switched off or changed since the draft
        await campaign_senders(session=session, sender=campaign.sender, pool=campaign.sender_pool or [])
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


# --- what the marketer's screens show ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecipientPreview:
    recipient_id: str
    number: str
    name: str | None
    status: str
    body: str | None
    encoding: str | None
    segments: int
    error: str | None


@dataclass(frozen=True, slots=True)
class CampaignEstimate:
    recipients: int
    sendable: int
    opted_out: int
    segments: int  # over every sendable recipient (extrapolated from a sample for a very large audience)
    cost: float
    errors: int  # recipients whose message cannot be made (a missing merge field): they will be failed
    sampled: bool


def _values_for(recipient: SmsCampaignRecipient, customer: Customer | None) -> dict[str, str]:
    values = customer_fields(customer.name, customer.custom_fields) if customer else {}
    for key, value in (recipient.merge_values or {}).items():
        if isinstance(value, str) and value.strip():
            values.setdefault(key, value)
    return values


async def _campaign(session: AsyncSession, campaign_id: str) -> SmsCampaign:
    campaign = await session.get(SmsCampaign, campaign_id)
    if campaign is None:
        raise NotFound("No such campaign.", campaign_id=campaign_id)
    return campaign


async def preview_recipients(
    *, session: AsyncSession, actor: Actor, campaign_id: str, limit: int = 10, recipient_id: str | None = None
) -> list[RecipientPreview]:
    """The message each of the first recipients (or one chosen) would get, with its encoding and segments, or why
    it cannot be made."""
    require_role(actor, Role.MARKETER, Role.SUPERVISOR)
    campaign = await _campaign(session, campaign_id)
    query = (
        select(SmsCampaignRecipient, Customer)
        .outerjoin(Customer, Customer.id == SmsCampaignRecipient.customer_id)
        .where(SmsCampaignRecipient.campaign_id == campaign.id)
        .order_by(SmsCampaignRecipient.status != "pending", SmsCampaignRecipient.number)
        .limit(limit)
    )
    if recipient_id:
        query = query.where(SmsCampaignRecipient.id == recipient_id)
    previews = []
    for recipient, customer in await session.execute(query):
        try:
            rendered = render(campaign.template, _values_for(recipient, customer))
        except ValidationFailed as exc:
            previews.append(
                RecipientPreview(
                    recipient.id,
                    recipient.number,
                    customer.name if customer else None,
                    recipient.status,
                    None,
                    None,
                    0,
                    exc.message,
                )
            )
            continue
        previews.append(
            RecipientPreview(
                recipient.id,
                recipient.number,
                customer.name if customer else None,
                recipient.status,
                rendered.body,
                rendered.shape.encoding,
                rendered.shape.segments,
                None,
            )
        )
    return previews


async def estimate_campaign(
    *, session: AsyncSession, actor: Actor, campaign_id: str, sample: int = 5000
) -> CampaignEstimate:
    """Segments and cost before sending: every sendable recipient's message is made (up to `sample` of them; beyond,
    the sample's average is scaled to the whole audience), priced at its sender's price per segment."""
    require_role(actor, Role.MARKETER, Role.SUPERVISOR)
    campaign = await _campaign(session, campaign_id)
    counts = dict(
        (str(k), int(v))
        for k, v in await session.execute(
            select(SmsCampaignRecipient.status, func.count())
            .where(SmsCampaignRecipient.campaign_id == campaign.id)
            .group_by(SmsCampaignRecipient.status)
        )
    )
    sendable = counts.get("pending", 0)
    prices = await sender_prices(session=session)
    defaults = await country_defaults(session=session)
    segments = errors = 0
    cost = 0.0
    rows = await session.execute(
        select(SmsCampaignRecipient, Customer)
        .outerjoin(Customer, Customer.id == SmsCampaignRecipient.customer_id)
        .where(SmsCampaignRecipient.campaign_id == campaign.id, SmsCampaignRecipient.status == "pending")
        .order_by(SmsCampaignRecipient.id)
        .limit(sample)
    )
    seen = 0
    for recipient, customer in rows:
        seen += 1
        try:
            rendered = render(campaign.template, _values_for(recipient, customer))
        except ValidationFailed:
            errors += 1
            continue
        sender = pick_sender(
            recipient.number, sender=campaign.sender, pool=campaign.sender_pool or [], defaults=defaults
        )
        segments += rendered.shape.segments
        cost += rendered.shape.segments * prices.get(sender or "", 0.0)
    scale = sendable / seen if seen and sendable > seen else 1.0
    return CampaignEstimate(
        recipients=sum(counts.values()),
        sendable=sendable,
        opted_out=counts.get("opted_out", 0),
        segments=round(segments * scale),
        cost=round(cost * scale, 4),
        errors=round(errors * scale),
        sampled=scale != 1.0,
    )


@dataclass(frozen=True, slots=True)
class RecipientRow:
    number: str
    name: str | None
    status: str
    reason: str | None
    sender: str | None
    updated_at: datetime | None


async def campaign_recipients(
    *, session: AsyncSession, actor: Actor, campaign_id: str, status: str | None = None, limit: int = 100
) -> list[RecipientRow]:
    """Each recipient with its status (its message's, once handed to the outbox) and why it failed."""
    require_role(actor, Role.MARKETER, Role.SUPERVISOR)
    await _campaign(session, campaign_id)
    state = func.coalesce(SmsMessage.status, SmsCampaignRecipient.status)
    query = (
        select(
            SmsCampaignRecipient.number,
            Customer.name,
            state,
            func.coalesce(SmsMessage.error_detail, SmsCampaignRecipient.reason),
            SmsMessage.from_number,
            SmsMessage.updated_at,
        )
        .outerjoin(SmsMessage, SmsMessage.id == SmsCampaignRecipient.message_id)
        .outerjoin(Customer, Customer.id == SmsCampaignRecipient.customer_id)
        .where(SmsCampaignRecipient.campaign_id == campaign_id)
        .order_by(SmsCampaignRecipient.number)
        .limit(limit)
    )
    if status:
        query = query.where(state == status)
    return [RecipientRow(*row) for row in await session.execute(query)]


@dataclass(frozen=True, slots=True)
class CampaignResults:
    statuses: dict[str, int]
    total: int
    handed_over: int  # recipients whose message went to the provider
    delivered: int
    delivery_rate: float | None  # delivered / handed over with a final answer
    replies: int  # recipients who texted back after the campaign started
    opt_outs: int  # recipients who opted out after it started (a keyword or the provider's 21610)
    cost: float
    done: bool


async def campaign_results(*, session: AsyncSession, actor: Actor, campaign_id: str) -> CampaignResults:
    require_role(actor, Role.MARKETER, Role.SUPERVISOR)
    campaign = await _campaign(session, campaign_id)
    statuses = await campaign_progress(session=session, actor=actor, campaign_id=campaign_id)
    total = sum(statuses.values())
    handed = sum(statuses.get(s, 0) for s in ("accepted", "sent", "delivered", "undelivered"))
    delivered = statuses.get("delivered", 0)
    judged = delivered + statuses.get("undelivered", 0)
    numbers = select(SmsCampaignRecipient.number).where(SmsCampaignRecipient.campaign_id == campaign_id)
    since = campaign.started_at or campaign.created_at
    replies = await session.scalar(
        select(func.count(func.distinct(SmsMessage.from_number))).where(
            SmsMessage.direction == "inbound", SmsMessage.from_number.in_(numbers), SmsMessage.created_at >= since
        )
    )
    opt_outs = await session.scalar(
        select(func.count(func.distinct(SmsConsentChange.number))).where(
            SmsConsentChange.opted_out.is_(True), SmsConsentChange.number.in_(numbers), SmsConsentChange.at >= since
        )
    )
    prices = await sender_prices(session=session)
    cost = 0.0
    for sender, segments in await session.execute(
        select(SmsMessage.from_number, func.sum(SmsMessage.segments))
        .join(SmsCampaignRecipient, SmsCampaignRecipient.message_id == SmsMessage.id)
        .where(
            SmsCampaignRecipient.campaign_id == campaign_id,
            SmsMessage.provider_sid.is_not(None),
        )
        .group_by(SmsMessage.from_number)
    ):
        cost += float(segments or 0) * prices.get(sender, 0.0)
    return CampaignResults(
        statuses=statuses,
        total=total,
        handed_over=handed,
        delivered=delivered,
        delivery_rate=(delivered / judged) if judged else None,
        replies=int(replies or 0),
        opt_outs=int(opt_outs or 0),
        cost=round(cost, 4),
        done=campaign.status in ("done", "cancelled"),
    )


async def list_campaigns(*, session: AsyncSession, actor: Actor, limit: int = 100) -> list[tuple[SmsCampaign, int]]:
    """The newest campaigns, each with its number of recipients."""
    require_role(actor, Role.MARKETER, Role.SUPERVISOR)
    counts = (
        select(SmsCampaignRecipient.campaign_id, func.count().label("n"))
        .group_by(SmsCampaignRecipient.campaign_id)
        .subquery()
    )
    rows = await session.execute(
        select(SmsCampaign, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.campaign_id == SmsCampaign.id)
        .order_by(SmsCampaign.created_at.desc())
        .limit(limit)
    )
    return [(campaign, int(n)) for campaign, n in rows]


async def resolve_customers(*, session: AsyncSession, picked: list[str], region: str) -> tuple[list[str], list[str]]:
    """Hand-picked customers, each given by id or phone number: (customer ids, the lines that match none)."""
    ids: list[str] = []
    unknown: list[str] = []
    for line in picked[:10_000]:
        if len(line) == 32 and all(c in "0123456789abcdef" for c in line):
            if await session.scalar(select(Customer.id).where(Customer.id == line, Customer.merged_into_id.is_(None))):
                ids.append(line)
                continue
        number = normalize_number(line, region)
        found = (
            await session.scalar(
                select(CustomerPhone.customer_id)
                .join(Customer, Customer.id == CustomerPhone.customer_id)
                .where(CustomerPhone.e164 == number, Customer.merged_into_id.is_(None))
                .limit(1)
            )
            if number
            else None
        )
        if found:
            ids.append(found)
        else:
            unknown.append(line)
    return list(dict.fromkeys(ids)), unknown


@dataclass(frozen=True, slots=True)
class SamplePreview:
    name: str | None
    body: str | None
    encoding: str | None
    units: int
    segments: int
    error: str | None


async def sample_preview(
    *, session: AsyncSession, actor: Actor, template: str, segment_id: str | None
) -> SamplePreview | None:
    """The template made for one customer (the segment's first, else anyone's), while the marketer types it."""
    require_role(actor, Role.MARKETER)
    if not template.strip():
        return None
    query: Select[str] | None = None
    if segment_id:
        query = await segment_member_query(session=session, actor=actor, segment_id=segment_id)
    base = select(Customer).where(Customer.merged_into_id.is_(None))
    if query is not None:
        base = base.where(Customer.id.in_(query))
    customer = await session.scalar(base.order_by(Customer.name).limit(1))
    values = customer_fields(customer.name, customer.custom_fields) if customer else {}
    try:
        rendered = render(template, values)
    except ValidationFailed as exc:
        return SamplePreview(customer.name if customer else None, None, None, 0, 0, exc.message)
    shape = rendered.shape
    return SamplePreview(
        customer.name if customer else None, rendered.body, shape.encoding, shape.units, shape.segments, None
    )
