"""SMS senders as a table: long codes, toll-free numbers, short codes and Messaging Services, each with its own
rate (segments a second) and price, a default per country, and the A2P 10DLC rule for US long codes in campaigns."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.errors import NotFound, ValidationFailed
from crm_core.sms.models import SENDER_KINDS, SmsSender
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_SHORT_CODE = re.compile(r"^[0-9]{3,8}$")
_SERVICE = re.compile(r"^MG[0-9a-fA-F]{32}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
US_TOLL_FREE = ("800", "833", "844", "855", "866", "877", "888")
KIND_NAMES = {
    "long_code": "long code",
    "toll_free": "toll-free number",
    "short_code": "short code",
    "messaging_service": "Messaging Service",
}


class SenderRefused(ValidationFailed):
    """A sender a campaign may not use (unknown, switched off, or a US long code without A2P 10DLC)."""

    code = "sender_refused"


@dataclass(frozen=True, slots=True)
class SenderIn:
    address: str
    kind: str
    country: str
    label: str = ""
    mps: float = 1.0
    price_per_segment: float = 0.0079
    is_default: bool = False
    a2p_10dlc_registered: bool = False
    active: bool = True


def check_sender(data: SenderIn) -> SenderIn:
    """The sender as it will be stored, or ValidationFailed naming the field."""
    kind = data.kind.strip()
    if kind not in SENDER_KINDS:
        raise ValidationFailed("The kind is long_code, toll_free, short_code or messaging_service.", field="kind")
    address = data.address.strip()
    country = data.country.strip().upper()
    if not _COUNTRY.match(country):
        raise ValidationFailed("The country is two letters (ISO 3166), like US or GB.", field="country")
    if kind == "messaging_service":
        if not _SERVICE.match(address):
            raise ValidationFailed("A Messaging Service SID is MG followed by 32 hex digits.", field="address")
    elif kind == "short_code":
        if not _SHORT_CODE.match(address):
            raise ValidationFailed("A short code is 3 to 8 digits.", field="address")
    else:
        if not _E164.match(address):
            raise ValidationFailed("A number is in E.164, like +15551230000.", field="address")
        try:
            parsed = phonenumbers.parse(address)
        except phonenumbers.NumberParseException:
            raise ValidationFailed("The number cannot be read.", field="address") from None
        region = phonenumbers.region_code_for_number(parsed)
        toll_free = country == "US" and address[2:5] in US_TOLL_FREE
        if kind == "toll_free" and country == "US" and not toll_free:
            raise ValidationFailed(
                "A US toll-free number starts +1 800, 833, 844, 855, 866, 877 or 888.", field="address"
            )
        if kind == "long_code" and toll_free:
            raise ValidationFailed("That is a toll-free number: choose the kind toll_free.", field="kind")
        if region and region != country and not (country == "US" and region in ("CA", "US")):
            raise ValidationFailed(f"The number belongs to {region}, not {country}.", field="country")
    if not 0 < data.mps <= 10_000:
        raise ValidationFailed("The rate is more than 0 and at most 10,000 segments a second.", field="mps")
    if not 0 <= data.price_per_segment <= 10:
        raise ValidationFailed("The price per segment is between 0 and 10.", field="price_per_segment")
    return SenderIn(
        address=address,
        kind=kind,
        country=country,
        label=data.label.strip()[:100],
        mps=float(data.mps),
        price_per_segment=float(data.price_per_segment),
        is_default=data.is_default,
        a2p_10dlc_registered=data.a2p_10dlc_registered,
        active=data.active,
    )


async def list_senders(*, session: AsyncSession, active_only: bool = False) -> list[SmsSender]:
    query = select(SmsSender).order_by(SmsSender.country, SmsSender.is_default.desc(), SmsSender.address)
    if active_only:
        query = query.where(SmsSender.active.is_(True))
    return list(await session.scalars(query))


async def save_sender(
    *, session: AsyncSession, actor: Actor, data: SenderIn, sender_id: str | None = None
) -> SmsSender:
    """Add a sender or change one (admins). Making it the default of its country unsets the previous default."""
    require_role(actor, Role.ADMIN)
    clean = check_sender(data)
    if sender_id is None:
        sender = SmsSender(address=clean.address)
        if await session.scalar(select(SmsSender.id).where(SmsSender.address == clean.address)):
            raise ValidationFailed(f"{clean.address} is a sender already.", field="address")
        before: dict[str, object] | None = None
    else:
        found = await session.get(SmsSender, sender_id, with_for_update=True)
        if found is None:
            raise NotFound("No such sender.", sender_id=sender_id)
        sender = found
        before = _audit_view(sender)
        if clean.address != sender.address:
            raise ValidationFailed("A sender's address does not change: add another sender.", field="address")
    if clean.is_default and clean.active:
        await session.execute(
            update(SmsSender)
            .where(SmsSender.country == clean.country, SmsSender.address != clean.address)
            .values(is_default=False)
            .execution_options(synchronize_session="fetch")
        )
    sender.kind = clean.kind
    sender.country = clean.country
    sender.label = clean.label
    sender.mps = clean.mps
    sender.price_per_segment = clean.price_per_segment
    sender.is_default = clean.is_default and clean.active
    sender.a2p_10dlc_registered = clean.a2p_10dlc_registered
    sender.active = clean.active
    session.add(sender)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create" if before is None else "update",
        entity_type="sms_sender",
        entity_id=sender.id,
        before=before,
        after=_audit_view(sender),
    )
    return sender


def _audit_view(sender: SmsSender) -> dict[str, object]:
    return {
        "address": sender.address,
        "kind": sender.kind,
        "country": sender.country,
        "mps": sender.mps,
        "default": sender.is_default,
        "a2p_10dlc": sender.a2p_10dlc_registered,
        "active": sender.active,
    }


def campaign_refusal(sender: SmsSender) -> str | None:
    """Why a campaign may not send from `sender`, or None."""
    if not sender.active:
        return f"{sender.address} is switched off."
    if sender.kind == "long_code" and sender.country == "US" and not sender.a2p_10dlc_registered:
        return (
            f"{sender.address} is a US long code not registered for A2P 10DLC: carriers block unregistered "
            "application-to-person traffic. Register its brand and campaign with Twilio, or choose a toll-free "
            "number, a short code or a registered Messaging Service."
        )
    return None


async def campaign_senders(
    *, session: AsyncSession, sender: str, pool: Sequence[str]
) -> tuple[str, list[str], list[SmsSender]]:
    """Check the senders a campaign would use and return (sender, pool, the rows): one sender, a pool, or (both
    empty) each country's default. SenderRefused with the reason when any of them may not send a campaign."""
    chosen = [a.strip() for a in ([sender] if sender.strip() else []) + list(pool) if a.strip()]
    chosen = list(dict.fromkeys(chosen))
    if chosen:
        rows = list(await session.scalars(select(SmsSender).where(SmsSender.address.in_(chosen))))
        known = {r.address for r in rows}
        unknown = [a for a in chosen if a not in known]
        if unknown:
            raise SenderRefused(
                f"{', '.join(unknown)} is not a sender here: an admin adds it under Admin → SMS senders.",
                field="sender",
            )
    else:
        rows = list(
            await session.scalars(select(SmsSender).where(SmsSender.is_default.is_(True), SmsSender.active.is_(True)))
        )
        if not rows:
            raise SenderRefused("Choose a sender: no country has a default sender.", field="sender")
    for row in rows:
        reason = campaign_refusal(row)
        if reason:
            raise SenderRefused(reason, field="sender", sender=row.address)
    if len(chosen) > 1:
        return "", chosen, rows
    return (chosen[0] if chosen else ""), [], rows


def number_country(number: str) -> str | None:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(number))
    except phonenumbers.NumberParseException:
        return None


def pick_sender(number: str, *, sender: str, pool: Sequence[str], defaults: dict[str, str]) -> str | None:
    """The sender for one recipient: the campaign's one sender, a pool member chosen by the number (the same
    number always gets the same sender, so replies land in one thread), or the default of the number's country."""
    if pool:
        return pool[zlib.crc32(number.encode()) % len(pool)]
    if sender:
        return sender
    country = number_country(number)
    if country is None:
        return None
    return defaults.get(country) or (defaults.get("US") if country == "CA" else None)


async def country_defaults(*, session: AsyncSession) -> dict[str, str]:
    rows = await session.execute(
        select(SmsSender.country, SmsSender.address).where(SmsSender.is_default.is_(True), SmsSender.active.is_(True))
    )
    return {country: address for country, address in rows}


async def sender_rates(*, session: AsyncSession) -> dict[str, float]:
    """Each active sender's rate in segments a second (the outbox's token buckets)."""
    rows = await session.execute(select(SmsSender.address, SmsSender.mps).where(SmsSender.active.is_(True)))
    return {address: float(mps) for address, mps in rows}


async def sender_prices(*, session: AsyncSession) -> dict[str, float]:
    rows = await session.execute(select(SmsSender.address, SmsSender.price_per_segment))
    return {address: float(price) for address, price in rows}
