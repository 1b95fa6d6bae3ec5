"""What the wallboard reads from the database, so that it survives a restart of the bridge: each agent's answered
calls today, who the agent is and which queues they belong to, and the missed calls waiting for a call back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.calls.followups import count_missed
from crm_core.calls.models import CallLeg, CallLog
from crm_core.users.models import Role, User
from crm_core.users.service import Actor, require_role


@dataclass(frozen=True, slots=True)
class AgentToday:
    extension: str
    name: str
    queues: tuple[str, ...]  # the queues the agent belongs to (a supervisor logs them back in)
    calls_today: int  # calls this agent answered since midnight UTC


async def agents_today(*, session: AsyncSession, actor: Actor, since: datetime) -> list[AgentToday]:
    require_role(actor, Role.SUPERVISOR)
    answered = dict(
        (str(agent), int(count))
        for agent, count in await session.execute(
            select(CallLeg.agent, func.count(func.distinct(CallLeg.call_id)))
            .join(CallLog, CallLog.id == CallLeg.call_id)
            .where(CallLog.offered_at >= since, CallLeg.answered_at.is_not(None))
            .group_by(CallLeg.agent)
        )
    )
    users = await session.scalars(select(User).where(User.extension.is_not(None), User.is_active.is_(True)))
    return [
        AgentToday(
            extension=str(user.extension),
            name=user.display_name,
            queues=tuple(str(q) for q in user.queues or []),
            calls_today=answered.get(str(user.extension), 0),
        )
        for user in users
    ]


async def missed_today(*, session: AsyncSession, actor: Actor, since: datetime) -> dict[str, int]:
    require_role(actor, Role.SUPERVISOR)
    return await count_missed(session=session, since=since)
