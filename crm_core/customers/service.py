"""Customers: create with duplicate check, update, delete, search, merge, ownership pool, notes."""

from __future__ import annotations

import difflib
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.calls.models import CallbackRequest, CallLog
from crm_core.customers.errors import DuplicateCustomer, InvalidEmail
from crm_core.customers.events import CustomerCreated, CustomerMerged
from crm_core.customers.models import Customer, CustomerEmail, CustomerPhone, Note, Payment, Tag
from crm_core.customers.phones import normalize_phone
from crm_core.customers.schemas import CustomerIn, DuplicateCandidate
from crm_core.db import record_event, utcnow
from crm_core.errors import NotFound, PermissionDenied, ValidationFailed
from crm_core.sms.models import SmsMessage
from crm_core.tickets.models import Ticket
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
NAME_SIMILARITY = 0.9
STAFF = (Role.AGENT, Role.SUPERVISOR)


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    if not EMAIL_RE.match(email) or len(email) > 254:
        raise InvalidEmail(f"{raw!r} is not an email address.", email=raw)
    return email


def _name_key(name: str) -> str:
    return " ".join(name.lower().split())


def check_customer(data: CustomerIn, region: str) -> tuple[list[tuple[str, str, bool]], list[str]]:
    """Validate and normalise phones, emails and timezone; return (phones, emails) or raise a typed error."""
    phones: list[tuple[str, str, bool]] = []
    seen: set[str] = set()
    for index, phone in enumerate(data.phones):
        e164 = normalize_phone(phone.number, region)
        if e164 in seen:
            continue
        seen.add(e164)
        phones.append((e164, phone.label, phone.is_primary or index == 0))
    emails = list(dict.fromkeys(normalize_email(e) for e in data.emails))
    if data.timezone:
        try:
            ZoneInfo(data.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationFailed(f"{data.timezone!r} is not a time zone (e.g. Europe/Paris).") from None
    return phones, emails


async def find_duplicates(
    *,
    session: AsyncSession,
    name: str,
    phones: list[str],
    emails: list[str],
    parent_id: str | None = None,
    exclude_id: str | None = None,
) -> list[DuplicateCandidate]:
    """Customers that look like the same person: same E.164 phone, same email, or near-identical name in the
    same company."""
    found: dict[str, DuplicateCandidate] = {}

    def _add(customer_id: str, customer_name: str, reason: str) -> None:
        if customer_id != exclude_id and customer_id not in found:
            found[customer_id] = DuplicateCandidate(id=customer_id, name=customer_name, reason=reason)

    live = Customer.merged_into_id.is_(None)
    if phones:
        rows = await session.execute(
            select(Customer.id, Customer.name, CustomerPhone.e164)
            .join(CustomerPhone, CustomerPhone.customer_id == Customer.id)
            .where(CustomerPhone.e164.in_(phones), live)
        )
        for customer_id, customer_name, e164 in rows:
            _add(customer_id, customer_name, f"same phone {e164}")
    if emails:
        rows = await session.execute(
            select(Customer.id, Customer.name, CustomerEmail.email)
            .join(CustomerEmail, CustomerEmail.customer_id == Customer.id)
            .where(CustomerEmail.email.in_(emails), live)
        )
        for customer_id, customer_name, email in rows:
            _add(customer_id, customer_name, f"same email {email}")
    if parent_id:
        key = _name_key(name)
        siblings = await session.execute(
            select(Customer.id, Customer.name).where(Customer.parent_id == parent_id, live)
        )
        for customer_id, customer_name in siblings:
            if difflib.SequenceMatcher(None, key, _name_key(customer_name)).ratio() >= NAME_SIMILARITY:
                _add(customer_id, customer_name, "near-identical name in the same company")
    return list(found.values())


async def _tags(session: AsyncSession, names: list[str]) -> list[Tag]:
    wanted = list(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    if not wanted:
        return []
    existing = {t.name: t for t in await session.scalars(select(Tag).where(Tag.name.in_(wanted)))}
    for name in wanted:
        if name not in existing:
            existing[name] = Tag(name=name)
            session.add(existing[name])
    return [existing[n] for n in wanted]


def snapshot(customer: Customer) -> dict[str, Any]:
    """What the audit log keeps of a customer."""
    return {
        "name": customer.name,
        "kind": customer.kind,
        "parent_id": customer.parent_id,
        "phones": [p.e164 for p in customer.phones],
        "emails": [e.email for e in customer.emails],
        "city": customer.city,
        "country": customer.country,
        "timezone": customer.timezone,
        "language": customer.language,
        "owner_id": customer.owner_id,
        "tags": sorted(t.name for t in customer.tags),
        "custom_fields": dict(customer.custom_fields or {}),
        "vip_tier": customer.vip_tier,
    }


async def create_customer(
    *,
    session: AsyncSession,
    actor: Actor,
    data: CustomerIn,
    region: str,
    allow_duplicate: bool = False,
) -> Customer:
    require_role(actor, *STAFF)
    phones, emails = check_customer(data, region)
    if data.parent_id and await session.get(Customer, data.parent_id) is None:
        raise NotFound("The company this contact belongs to does not exist.", parent_id=data.parent_id)
    if not allow_duplicate:
        candidates = await find_duplicates(
            session=session, name=data.name, phones=[p[0] for p in phones], emails=emails, parent_id=data.parent_id
        )
        if candidates:
            raise DuplicateCustomer(
                f"{data.name!r} looks like {len(candidates)} existing customer(s).",
                candidates=[c.model_dump() for c in candidates],
            )
    now = utcnow()
    customer = Customer(
        kind=data.kind,
        name=data.name,
        parent_id=data.parent_id or None,  # an empty id is no company (not a dangling reference)
        title=data.title,
        street=data.street,
        city=data.city,
        postal_code=data.postal_code,
        country=data.country.upper() if data.country else None,
        timezone=data.timezone,
        language=data.language,
        owner_id=data.owner_id or None,
        owner_assigned_at=now if data.owner_id else None,
        custom_fields=data.custom_fields,
        vip_tier=data.vip_tier,
        phones=[CustomerPhone(e164=e, label=label, is_primary=primary) for e, label, primary in phones],
        emails=[CustomerEmail(email=e) for e in emails],
        tags=await _tags(session, data.tags),
    )
    session.add(customer)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="customer",
        entity_id=customer.id,
        after=snapshot(customer),
    )
    record_event(session, CustomerCreated(customer.id, customer.kind, customer.name, now))
    return customer


async def get_customer(*, session: AsyncSession, actor: Actor, customer_id: str) -> Customer:
    require_role(actor, *STAFF, Role.MARKETER)
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise NotFound("No such customer.", customer_id=customer_id)
    return customer


async def record_customer_view(*, session: AsyncSession, actor: Actor, customer_id: str) -> None:
    """Who opened which customer's record, for the audit trail (the caller does it in its own transaction)."""
    await record_audit(
        session=session, actor=actor.user_id, action="read", entity_type="customer", entity_id=customer_id
    )


async def update_customer(
    *, session: AsyncSession, actor: Actor, customer_id: str, data: CustomerIn, region: str
) -> Customer:
    require_role(actor, *STAFF)
    customer = await get_customer(session=session, actor=actor, customer_id=customer_id)
    before = snapshot(customer)
    phones, emails = check_customer(data, region)
    customer.name = data.name
    customer.kind = data.kind
    customer.parent_id = data.parent_id or None
    customer.title = data.title
    customer.street, customer.city, customer.postal_code = data.street, data.city, data.postal_code
    customer.country = data.country.upper() if data.country else None
    customer.timezone, customer.language = data.timezone, data.language
    customer.custom_fields = data.custom_fields
    customer.vip_tier = data.vip_tier
    customer.phones = [CustomerPhone(e164=e, label=label, is_primary=primary) for e, label, primary in phones]
    customer.emails = [CustomerEmail(email=e) for e in emails]
    customer.tags = await _tags(session, data.tags)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="customer",
        entity_id=customer.id,
        before=before,
        after=snapshot(customer),
    )
    return customer


async def delete_customer(*, session: AsyncSession, actor: Actor, customer_id: str) -> None:
    require_role(actor, Role.SUPERVISOR)
    customer = await get_customer(session=session, actor=actor, customer_id=customer_id)
    before = snapshot(customer)
    await session.delete(customer)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="delete",
        entity_type="customer",
        entity_id=customer_id,
        before=before,
    )


async def merge_customers(*, session: AsyncSession, actor: Actor, keep_id: str, merge_id: str) -> Customer:
    """Fold `merge_id` into `keep_id`: calls, tickets, SMS, notes, payments, callbacks, phones, emails, tags."""
    require_role(actor, Role.SUPERVISOR)
    if keep_id == merge_id:
        raise ValidationFailed("A customer cannot be merged into itself.")
    keep = await get_customer(session=session, actor=actor, customer_id=keep_id)
    gone = await get_customer(session=session, actor=actor, customer_id=merge_id)
    if gone.merged_into_id or keep.merged_into_id:
        raise ValidationFailed("One of these customers was already merged.")
    before = {"keep": snapshot(keep), "merged": snapshot(gone)}
    moved: dict[str, int] = {}
    for model in (CallLog, Ticket, SmsMessage, Note, Payment, CallbackRequest):
        result: Any = await session.execute(
            update(model).where(model.customer_id == merge_id).values(customer_id=keep_id)
        )
        moved[model.__tablename__] = int(result.rowcount or 0)
    await session.execute(update(Customer).where(Customer.parent_id == merge_id).values(parent_id=keep_id))
    have_phones = {p.e164 for p in keep.phones}
    have_emails = {e.email for e in keep.emails}
    for phone in list(gone.phones):
        if phone.e164 not in have_phones:
            keep.phones.append(CustomerPhone(e164=phone.e164, label=phone.label, is_primary=False))
    for email in list(gone.emails):
        if email.email not in have_emails:
            keep.emails.append(CustomerEmail(email=email.email, label=email.label))
    for tag in gone.tags:
        if tag not in keep.tags:
            keep.tags.append(tag)
    for key, value in (gone.custom_fields or {}).items():
        keep.custom_fields = {**(keep.custom_fields or {}), key: keep.custom_fields.get(key, value)}
    gone.phones = []
    gone.emails = []
    gone.tags = []
    gone.merged_into_id = keep_id
    latest = [t for t in (keep.last_interaction_at, gone.last_interaction_at) if t]
    keep.last_interaction_at = max(latest) if latest else None
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="merge",
        entity_type="customer",
        entity_id=keep_id,
        before=before,
        after={"keep": snapshot(keep), "merged_id": merge_id, "moved": moved},
    )
    record_event(session, CustomerMerged(kept_id=keep_id, merged_id=merge_id, merged_at=utcnow()))
    return keep


# --- ownership and the shared pool --------------------------------------------------------------------


async def assign_owner(
    *, session: AsyncSession, actor: Actor, customer_id: str, owner_id: str | None, now: datetime | None = None
) -> Customer:
    """Agents may claim a pool customer for themselves; supervisors assign or release anyone."""
    customer = await get_customer(session=session, actor=actor, customer_id=customer_id)
    if actor.role is Role.AGENT:
        if owner_id != actor.user_id:
            raise PermissionDenied("An agent can only claim customers for themselves.")
        if customer.owner_id and customer.owner_id != actor.user_id:
            raise PermissionDenied("This customer is owned by another agent; ask a supervisor to reassign.")
    else:
        require_role(actor, Role.SUPERVISOR)
    before = {"owner_id": customer.owner_id}
    customer.owner_id = owner_id
    customer.owner_assigned_at = (now or utcnow()) if owner_id else None
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="customer",
        entity_id=customer.id,
        before=before,
        after={"owner_id": owner_id},
    )
    return customer


async def touch_interaction(*, session: AsyncSession, customer_id: str, at: datetime | None = None) -> None:
    """Record a logged interaction (call, SMS, note): it keeps the customer with its owner.

    One statement built once, run on the session's connection: the call-log writer runs this for every call,
    beside the screen pops, and a statement built per call leaves garbage for the collector. A Customer already
    loaded in this session keeps its old `last_interaction_at` until refreshed."""
    connection = await session.connection()
    await connection.execute(_TOUCH, {"b_customer_id": customer_id, "b_at": at or utcnow()})


_CUSTOMERS: Table = Customer.__table__  # type: ignore[assignment]
_TOUCH = (
    update(_CUSTOMERS)
    .where(
        _CUSTOMERS.c.id == bindparam("b_customer_id"),
        or_(
            _CUSTOMERS.c.last_interaction_at.is_(None),
            _CUSTOMERS.c.last_interaction_at < bindparam("b_at", type_=_CUSTOMERS.c.last_interaction_at.type),
        ),
    )
    .values(last_interaction_at=bindparam("b_at", type_=_CUSTOMERS.c.last_interaction_at.type))
)


async def release_stale_owners(*, session: AsyncSession, days: int, now: datetime | None = None) -> list[str]:
    """Return to the pool every owned customer with no logged interaction for `days` days; audited per customer."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    last_seen = func.coalesce(Customer.last_interaction_at, Customer.owner_assigned_at)
    stale = list(
        await session.execute(
            select(Customer.id, Customer.owner_id).where(Customer.owner_id.is_not(None), last_seen < cutoff)
        )
    )
    if not stale:
        return []
    ids = [row[0] for row in stale]
    await session.execute(update(Customer).where(Customer.id.in_(ids)).values(owner_id=None, owner_assigned_at=None))
    for customer_id, owner_id in stale:
        await record_audit(
            session=session,
            actor=None,
            action="update",
            entity_type="customer",
            entity_id=customer_id,
            before={"owner_id": owner_id},
            after={"owner_id": None, "reason": f"no interaction for {days} days"},
        )
    return ids


# --- notes ---------------------------------------------------------------------------------------------


async def add_note(
    *, session: AsyncSession, actor: Actor, customer_id: str, body: str, call_id: str | None = None
) -> Note:
    require_role(actor, *STAFF)
    body = body.strip()
    if not body:
        raise ValidationFailed("A note cannot be empty.")
    await get_customer(session=session, actor=actor, customer_id=customer_id)
    note = Note(customer_id=customer_id, author_id=actor.user_id, body=body, call_id=call_id)
    session.add(note)
    await session.flush()
    await touch_interaction(session=session, customer_id=customer_id, at=note.created_at)
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="note",
        entity_id=note.id,
        after={"customer_id": customer_id},
    )
    return note
