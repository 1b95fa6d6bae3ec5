import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.models import AuditEntry
from crm_core.errors import PermissionDenied
from crm_core.users.errors import InvalidCredentials, UsernameTaken, WeakPassword
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, Actor, authenticate, create_user


async def test_create_and_authenticate(session: AsyncSession) -> None:
    user = await create_user(
        session=session, actor=SYSTEM, username="Ann", password="correct horse", role=Role.AGENT, extension="1001"
    )
    assert user.password_hash.startswith("$argon2")
    assert (await authenticate(session=session, username="ann", password="correct horse")).id == user.id
    with pytest.raises(InvalidCredentials):
        await authenticate(session=session, username="ann", password="wrong password")
    with pytest.raises(InvalidCredentials):
        await authenticate(session=session, username="nobody", password="correct horse")
    audit = (await session.scalars(select(AuditEntry).where(AuditEntry.entity_id == user.id))).all()
    assert [a.action for a in audit] == ["create"]
    assert "password" not in (audit[0].after or {})


async def test_rules(session: AsyncSession) -> None:
    await create_user(session=session, actor=SYSTEM, username="bob", password="long enough!", role=Role.AGENT)
    with pytest.raises(UsernameTaken):
        await create_user(session=session, actor=SYSTEM, username="BOB", password="long enough!", role=Role.AGENT)
    with pytest.raises(WeakPassword):
        await create_user(session=session, actor=SYSTEM, username="carl", password="short", role=Role.AGENT)
    agent = Actor(user_id="x", role=Role.AGENT)
    with pytest.raises(PermissionDenied):
        await create_user(session=session, actor=agent, username="dave", password="long enough!", role=Role.ADMIN)
