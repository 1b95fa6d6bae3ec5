"""One activity timeline per customer: notes, calls, SMS and tickets, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.calls.models import CallLog, Disposition
from crm_core.customers.models import Note
from crm_core.sms.models import SmsMessage
from crm_core.tickets.models import Ticket
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role


@dataclass(frozen=True, slots=True)
class TimelineItem:
    kind: str  # note | call | sms | ticket
    id: str
    at: datetime
    summary: dict[str, Any]


async def customer_timeline(
    *, session: AsyncSession, actor: Actor, customer_id: str, before: datetime | None = None, limit: int = 50
) -> list[TimelineItem]:
    """The newest `limit` items older than `before` (for paging), across all four kinds."""
    require_role(actor, Role.AGENT, Role.SUPERVISOR)
    items: list[TimelineItem] = []

    def window(column: Any) -> Any:
        return column < before if before is not None else column.is_not(None)

    notes = await session.scalars(
        select(Note)
        .where(Note.customer_id == customer_id, window(Note.created_at))
        .order_by(Note.created_at.desc())
        .limit(limit)
    )
    items += [TimelineItem("note", n.id, n.created_at, {"body": n.body, "author_id": n.author_id}) for n in notes]
    calls = await session.scalars(
        select(CallLog)
        .where(CallLog.customer_id == customer_id, window(CallLog.offered_at))
        .order_by(CallLog.offered_at.desc())
        .limit(limit)
    )
    labels = {code: label for code, label in await session.execute(select(Disposition.code, Disposition.label))}
    items += [
        TimelineItem(
            "call",
            c.id,
            c.offered_at,
            {
                "direction": c.direction,
                "outcome": c.outcome,
                "queue": c.queue,
                "agent": c.agent,
                "talk_seconds": c.talk_seconds,
                "disposition": c.disposition_code,
                "disposition_label": labels.get(c.disposition_code or "", c.disposition_code),
                "wrapup_notes": c.notes,
                "recording": c.recording_ref,
                "linkedid": c.linkedid,
            },
        )
        for c in calls
    ]
    messages = await session.scalars(
        select(SmsMessage)
        .where(SmsMessage.customer_id == customer_id, window(SmsMessage.created_at))
        .order_by(SmsMessage.created_at.desc())
        .limit(limit)
    )
    items += [
        TimelineItem("sms", m.id, m.created_at, {"direction": m.direction, "body": m.body, "status": m.status})
        for m in messages
    ]
    tickets = await session.scalars(
        select(Ticket)
        .where(Ticket.customer_id == customer_id, window(Ticket.created_at))
        .order_by(Ticket.created_at.desc())
        .limit(limit)
    )
    items += [
        TimelineItem("ticket", t.id, t.created_at, {"number": t.number, "subject": t.subject, "status": t.status})
        for t in tickets
    ]
    items.sort(key=lambda item: item.at, reverse=True)
    return items[:limit]
