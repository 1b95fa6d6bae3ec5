"""The audit viewer: who did what to which record, filtered, for admins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.models import AuditEntry
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role


async def search_audit(
    *,
    session: AsyncSession,
    actor: Actor,
    actor_id: str | None = None,
    action: str | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditEntry]:
    """The audit viewer: newest first, filtered; admins only (the trail itself is evidence)."""
    require_role(actor, Role.ADMIN)
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id).limit(limit).offset(offset)
    if actor_id:
        query = query.where(AuditEntry.actor_id == actor_id)
    if action:
        query = query.where(AuditEntry.action == action)
    if entity_type:
        query = query.where(AuditEntry.entity_type == entity_type)
    if entity_id:
        query = query.where(AuditEntry.entity_id == entity_id)
    if since:
        query = query.where(AuditEntry.at >= since)
    if until:
        query = query.where(AuditEntry.at < until)
    return list(await session.scalars(query))
