"""The lists admins keep for the floor: wrap-up dispositions and agents' pause reasons (add, rename, switch off;
never deleted, since old calls and pauses still name them)."""

from __future__ import annotations

import re

from sqlalchemy import Boolean, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.audit.service import record_audit
from crm_core.calls.models import Disposition
from crm_core.db import Base
from crm_core.errors import ValidationFailed
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

_CODE = re.compile(r"^[a-z0-9_]{1,32}$")
# a pause reason travels to the PBX (QueuePause Reason): printable characters only, and the PBX's own limit
_REASON = re.compile(r"^[\w .,'&/()+-]{1,80}$", re.UNICODE)
WRAPUP_PAUSE_REASON = "Wrap-up"  # the CRM's own pause; not offered to agents


class PauseReason(Base):
    __tablename__ = "pause_reasons"

    label: Mapped[str] = mapped_column(String(80), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


def check_label(label: str, field: str, limit: int) -> str:
    label = " ".join(label.split())
    if not label or len(label) > limit:
        raise ValidationFailed(f"The {field} must be 1 to {limit} characters.", field=field)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in label):
        raise ValidationFailed(f"The {field} contains control characters.", field=field)
    return label


async def active_dispositions(*, session: AsyncSession) -> list[Disposition]:
    return list(
        await session.scalars(select(Disposition).where(Disposition.active.is_(True)).order_by(Disposition.label))
    )


async def all_dispositions(*, session: AsyncSession) -> list[Disposition]:
    return list(await session.scalars(select(Disposition).order_by(Disposition.active.desc(), Disposition.label)))


async def save_disposition(*, session: AsyncSession, actor: Actor, code: str, label: str, active: bool) -> Disposition:
    require_role(actor, Role.ADMIN)
    code = code.strip().lower()
    if not _CODE.match(code):
        raise ValidationFailed("A disposition code is 1 to 32 lowercase letters, digits or _.", field="code")
    label = check_label(label, "label", 100)
    current = await session.get(Disposition, code)
    before = None if current is None else {"label": current.label, "active": current.active}
    if current is None:
        current = Disposition(code=code, label=label, active=active)
        session.add(current)
    else:
        current.label, current.active = label, active
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create" if before is None else "update",
        entity_type="disposition",
        entity_id=code,
        before=before,
        after={"label": label, "active": active},
    )
    await session.flush()
    return current


async def active_pause_reasons(*, session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(PauseReason.label).where(PauseReason.active.is_(True)).order_by(PauseReason.position, PauseReason.label)
    )
    return list(rows)


async def all_pause_reasons(*, session: AsyncSession) -> list[PauseReason]:
    return list(
        await session.scalars(
            select(PauseReason).order_by(PauseReason.active.desc(), PauseReason.position, PauseReason.label)
        )
    )


async def check_pause_reason(*, session: AsyncSession, label: str) -> str:
    """A reason an agent may pause with: one of the active list (what reports group by)."""
    reason = await session.get(PauseReason, label)
    if reason is None or not reason.active:
        raise ValidationFailed(f"{label[:80]!r} is not a pause reason in use.", field="reason")
    return reason.label


async def save_pause_reason(*, session: AsyncSession, actor: Actor, label: str, active: bool) -> PauseReason:
    require_role(actor, Role.ADMIN)
    label = check_label(label, "reason", 80)
    if not _REASON.match(label):
        raise ValidationFailed(
            "A pause reason uses letters, digits, spaces and . , ' & / ( ) + - only.", field="reason"
        )
    if label.lower() == WRAPUP_PAUSE_REASON.lower():
        raise ValidationFailed(f"{WRAPUP_PAUSE_REASON!r} is the CRM's own pause after a call.", field="reason")
    current = await session.get(PauseReason, label)
    before = None if current is None else {"active": current.active}
    if current is None:
        position = (await session.scalar(select(PauseReason.position).order_by(PauseReason.position.desc()))) or 0
        current = PauseReason(label=label, active=active, position=position + 1)
        session.add(current)
    else:
        current.active = active
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create" if before is None else "update",
        entity_type="pause_reason",
        entity_id=label,
        before=before,
        after={"active": active},
    )
    await session.flush()
    return current
