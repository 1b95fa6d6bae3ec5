"""Wrap-up the agent has not saved yet: which of an agent's calls still wait for a disposition, and the draft
(disposition, notes) typed so far, kept on the server so a reload or a crash of the browser loses nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, Text, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.calls.models import CallLeg, CallLog
from crm_core.calls.service import check_disposition, get_call
from crm_core.customers.models import Customer
from crm_core.db import Base, utcnow
from crm_core.errors import ValidationFailed
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

PENDING_FOR = timedelta(hours=12)  # a shift: older calls without a disposition are the supervisor's report
MAX_NOTES = 10_000


class WrapUpDraft(Base):
    __tablename__ = "wrapup_drafts"

    call_id: Mapped[str] = mapped_column(ForeignKey("call_logs.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(32), default=None)
    disposition_code: Mapped[str | None] = mapped_column(String(32), default=None)
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True, slots=True)
class PendingWrapUp:
    linkedid: str
    direction: str
    caller_number: str
    caller_name: str
    callee_number: str
    customer_id: str | None
    customer_name: str | None
    queue: str | None
    ended_at: datetime
    disposition_code: str
    notes: str


def _check_notes(notes: str | None) -> str:
    notes = notes or ""
    if len(notes) > MAX_NOTES:
        raise ValidationFailed(f"Notes are limited to {MAX_NOTES:,} characters.", field="notes")
    if "\x00" in notes:
        raise ValidationFailed("Notes may not contain NUL characters.", field="notes")
    return notes


async def save_draft(
    *, session: AsyncSession, actor: Actor, linkedid: str, disposition_code: str, notes: str | None
) -> WrapUpDraft:
    """Keep what the agent has typed so far (nothing is checked as complete: it is a draft)."""
    require_role(actor, Role.AGENT, Role.SUPERVISOR)
    call = await get_call(session=session, actor=actor, linkedid=linkedid)
    if disposition_code:
        await check_disposition(session=session, code=disposition_code)
    text = _check_notes(notes)
    draft = await session.get(WrapUpDraft, call.id)
    if draft is None:
        draft = WrapUpDraft(call_id=call.id)
        session.add(draft)
    draft.user_id = actor.user_id
    draft.disposition_code = disposition_code or None
    draft.notes = text
    draft.updated_at = utcnow()
    await session.flush()
    return draft


async def pending_wrapups(*, session: AsyncSession, actor: Actor, now: datetime | None = None) -> list[PendingWrapUp]:
    """Calls this agent talked on, ended, with no disposition yet (newest first), with their drafts."""
    require_role(actor, Role.AGENT, Role.SUPERVISOR)
    if not actor.extension:
        return []
    since = (now or utcnow()) - PENDING_FOR
    answered_by_me = (
        select(CallLeg.call_id)
        .where(CallLeg.agent == actor.extension, CallLeg.answered_at.is_not(None))
        .where(CallLeg.call_id == CallLog.id)
        .exists()
    )
    rows = await session.execute(
        select(CallLog, WrapUpDraft, Customer.name)
        .outerjoin(WrapUpDraft, WrapUpDraft.call_id == CallLog.id)
        .outerjoin(Customer, Customer.id == CallLog.customer_id)
        .where(
            CallLog.ended_at >= since,
            CallLog.disposition_code.is_(None),
            CallLog.answered_at.is_not(None),
            or_(CallLog.agent == actor.extension, answered_by_me),
        )
        .order_by(CallLog.ended_at.desc())
        .limit(50)
    )
    return [
        PendingWrapUp(
            linkedid=call.linkedid,
            direction=call.direction,
            caller_number=call.caller_number,
            caller_name=call.caller_name,
            callee_number=call.callee_number,
            customer_id=call.customer_id,
            customer_name=customer_name,
            queue=call.queue,
            ended_at=call.ended_at or since,
            disposition_code=(draft.disposition_code or "") if draft else "",
            notes=(draft.notes or "") if draft else "",
        )
        for call, draft, customer_name in rows
    ]
