"""Small builders shared by the core tests (real services, real databases)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.customers.models import Customer
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, Actor, create_user


async def make_actor(session: AsyncSession, role: Role, name: str | None = None, extension: str | None = None) -> Actor:
    user = await create_user(
        session=session,
        actor=SYSTEM,
        username=name or role.value,
        password="a long password",
        role=role,
        extension=extension,
    )
    return Actor.of(user)


async def make_customer(
    session: AsyncSession, name: str, *phones: str, emails: tuple[str, ...] = (), parent_id: str | None = None
) -> Customer:
    return await create_customer(
        session=session,
        actor=SYSTEM,
        region="US",
        data=CustomerIn(
            name=name, phones=[PhoneIn(number=p) for p in phones], emails=list(emails), parent_id=parent_id
        ),
    )
