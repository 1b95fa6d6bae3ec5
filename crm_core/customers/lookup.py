"""Caller-ID lookup: one index probe on customer_phones.e164."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.customers.models import Customer, CustomerPhone
from crm_core.customers.phones import caller_id_to_e164


async def find_customer_id_by_phone(*, session: AsyncSession, number: str, region: str) -> str | None:
    """The id of the customer with this number (E.164 or as the PBX wrote it), or None. Merged ones excluded."""
    e164 = number if number.startswith("+") and number[1:].isdigit() else caller_id_to_e164(number, region)
    if e164 is None:
        return None
    query = (
        select(CustomerPhone.customer_id)
        .join(Customer, Customer.id == CustomerPhone.customer_id)
        .where(CustomerPhone.e164 == e164, Customer.merged_into_id.is_(None))
        .order_by(CustomerPhone.is_primary.desc())
        .limit(1)
    )
    return await session.scalar(query)
