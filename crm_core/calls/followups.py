"""Missed calls to follow up: abandoned and unanswered inbound calls per queue and per agent, call back, and the
"handled" marks (one at a time or all at once) that take a call off the list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, ForeignKey, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.audit.service import record_audit
from crm_core.calls.models import CallLeg, CallLog
from crm_core.db import Base, utcnow
from crm_core.errors import ValidationFailed
from crm_core.users.models import Role, User
from crm_core.users.service import Actor, require_role

MISSED_OUTCOMES = ("abandoned", "missed")
MAX_MARKED_AT_ONCE = 1000


class MissedCallFollowUp(Base):
    """A missed call somebody has handled (called back, or judged needing nothing)."""

    __tablename__ = "missed_call_followups"

    call_id: Mapped[str] = mapped_column(ForeignKey("call_logs.id", ondelete="CASCADE"), primary_key=True)
    handled_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    handled_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True, slots=True)
class MissedCall:
    call_id: str
    linkedid: str
    caller_number: str
    caller_name: str
    customer_id: str | None
    queue: str | None
    offered_at: datetime
    wait_seconds: float
    outcome: str
    agents_rung: tuple[str, ...]


async def _scope(session: AsyncSession, actor: Actor) -> tuple[list[str], str | None] | None:
    """Which missed calls an actor follows up: supervisors all (None); agents their queues' and the calls that
    rang them."""
    require_role(actor, Role.AGENT, Role.SUPERVISOR)
    if actor.role is not Role.AGENT:
        return None
    queues = await session.scalar(select(User.queues).where(User.id == actor.user_id))
    return [str(q) for q in queues or []], actor.extension


def _open_missed(
    scope: tuple[list[str], str | None] | None, queue: str | None, agent: str | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        CallLog.direction == "inbound",
        CallLog.outcome.in_(MISSED_OUTCOMES),
        ~select(MissedCallFollowUp.call_id).where(MissedCallFollowUp.call_id == CallLog.id).exists(),
    ]
    rang = select(CallLeg.call_id).where(CallLeg.call_id == CallLog.id)
    if scope is not None:
        queues, extension = scope
        mine: list[ColumnElement[bool]] = [CallLog.queue.in_(queues)] if queues else []
        if extension:
            mine.append(rang.where(CallLeg.agent == extension).exists())
        conditions.append(or_(*mine) if mine else CallLog.id.is_(None))
    if queue:
        conditions.append(CallLog.queue == queue)
    if agent:
        conditions.append(rang.where(CallLeg.agent == agent).exists())
    return conditions


async def missed_calls(
    *,
    session: AsyncSession,
    actor: Actor,
    queue: str | None = None,
    agent: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
) -> list[MissedCall]:
    """Missed calls not handled yet, newest first."""
    conditions = _open_missed(await _scope(session, actor), queue, agent)
    if since is not None:
        conditions.append(CallLog.offered_at >= since)
    calls = list(
        await session.scalars(select(CallLog).where(and_(*conditions)).order_by(CallLog.offered_at.desc()).limit(limit))
    )
    return [
        MissedCall(
            call_id=call.id,
            linkedid=call.linkedid,
            caller_number=call.caller_number,
            caller_name=call.caller_name,
            customer_id=call.customer_id,
            queue=call.queue,
            offered_at=call.offered_at,
            wait_seconds=call.wait_seconds,
            outcome=call.outcome or "",
            agents_rung=tuple(dict.fromkeys(leg.agent for leg in call.legs)),
        )
        for call in calls
    ]


async def count_missed(*, session: AsyncSession, since: datetime) -> dict[str, int]:
    """Missed calls not handled yet per queue, since a time (for the wallboard)."""
    conditions = [*_open_missed(None, None, None), CallLog.offered_at >= since]
    rows = await session.execute(select(CallLog.queue, func.count()).where(and_(*conditions)).group_by(CallLog.queue))
    return {str(queue or ""): int(count) for queue, count in rows}


async def mark_handled(
    *, session: AsyncSession, actor: Actor, call_ids: list[str] | None = None, everything: bool = False
) -> int:
    """Mark missed calls handled: the ids given, or every missed call the actor follows up. Audited per call."""
    if not everything and not call_ids:
        raise ValidationFailed("Choose the missed calls to mark, or all of them.", field="call_ids")
    if call_ids is not None and len(call_ids) > MAX_MARKED_AT_ONCE:
        raise ValidationFailed(f"Mark at most {MAX_MARKED_AT_ONCE} calls at once.", field="call_ids")
    conditions = _open_missed(await _scope(session, actor), None, None)
    if not everything:
        conditions.append(CallLog.id.in_(call_ids or []))
    ids = list(await session.scalars(select(CallLog.id).where(and_(*conditions)).limit(10_000)))
    now = utcnow()
    for call_id in ids:
        session.add(MissedCallFollowUp(call_id=call_id, handled_by=actor.user_id, handled_at=now))
        await record_audit(
            session=session,
            actor=actor.user_id,
            action="update",
            entity_type="call",
            entity_id=call_id,
            after={"missed_call_handled": True},
        )
    await session.flush()
    return len(ids)
