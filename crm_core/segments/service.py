"""RFM segmentation (recency, frequency, monetary from payments) and saved segments SMS campaigns target."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.customers.models import Customer, Payment, Tag, customer_tags
from crm_core.db import utcnow
from crm_core.errors import Conflict, NotFound, ValidationFailed
from crm_core.segments.models import Segment
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role


@dataclass(frozen=True, slots=True)
class RfmScore:
    customer_id: str
    recency_days: int
    frequency: int
    monetary: Decimal
    r: int
    f: int
    m: int


def quintile_scores(values: list[float], *, higher_is_better: bool) -> list[int]:
    """Score each value 1–5 by its rank among all (ties share the score of their first rank)."""
    if not values:
        return []
    order = sorted(range(len(values)), key=lambda i: values[i], reverse=not higher_is_better)
    scores = [0] * len(values)
    n = len(values)
    previous_value: float | None = None
    previous_score = 1
    for rank, index in enumerate(order):
        value = values[index]
        score = previous_score if value == previous_value else 1 + (rank * 5) // n
        scores[index] = score
        previous_value, previous_score = value, score
    return scores


async def rfm_scores(
    *, session: AsyncSession, actor: Actor, window_days: int = 365, now: datetime | None = None
) -> list[RfmScore]:
    """Recency (days since last payment), frequency (count) and monetary (sum) over the window, scored 1–5."""
    require_role(actor, Role.MARKETER, Role.SUPERVISOR)
    when = now or utcnow()
    since = when - timedelta(days=window_days)
    rows = list(
        await session.execute(
            select(Payment.customer_id, func.max(Payment.occurred_at), func.count(Payment.id), func.sum(Payment.amount))
            .where(Payment.occurred_at >= since)
            .group_by(Payment.customer_id)
        )
    )
    recency = [max(0, (when - _aware(last)).days) for _, last, _, _ in rows]
    frequency = [int(count) for _, _, count, _ in rows]
    monetary = [Decimal(total or 0) for _, _, _, total in rows]
    r = quintile_scores([float(v) for v in recency], higher_is_better=False)
    f = quintile_scores([float(v) for v in frequency], higher_is_better=True)
    m = quintile_scores([float(v) for v in monetary], higher_is_better=True)
    return [RfmScore(row[0], recency[i], frequency[i], monetary[i], r[i], f[i], m[i]) for i, row in enumerate(rows)]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class RfmRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r_min: int = Field(default=1, ge=1, le=5)
    f_min: int = Field(default=1, ge=1, le=5)
    m_min: int = Field(default=1, ge=1, le=5)
    window_days: int = Field(default=365, ge=1)


class SegmentDefinition(BaseModel):
    """A saved segment: customers matching every part given (RFM minimums, all tags, country, language)."""

    model_config = ConfigDict(extra="forbid")

    rfm: RfmRule | None = None
    tags: list[str] = Field(default_factory=list)
    country: str | None = None
    language: str | None = None
    exclude_opted_out: bool = True


def check_definition(definition: dict[str, Any]) -> SegmentDefinition:
    try:
        return SegmentDefinition.model_validate(definition)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "definition"
        raise ValidationFailed(f"Segment rule {where}: {first['msg']}.") from None


async def create_segment(*, session: AsyncSession, actor: Actor, name: str, definition: dict[str, Any]) -> Segment:
    require_role(actor, Role.MARKETER)
    rule = check_definition(definition)
    if not name.strip():
        raise ValidationFailed("A segment needs a name.")
    segment = Segment(name=name.strip(), definition=rule.model_dump(), created_by=actor.user_id)
    try:
        async with session.begin_nested():
            session.add(segment)
            await session.flush()
    except IntegrityError:
        raise Conflict(f"A segment named {name!r} exists already.") from None
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="segment",
        entity_id=segment.id,
        after={"name": segment.name, "definition": segment.definition},
    )
    return segment


async def segment_members(
    *, session: AsyncSession, actor: Actor, segment_id: str, now: datetime | None = None
) -> list[str]:
    """The ids of the customers in a saved segment, evaluated now."""
    require_role(actor, Role.MARKETER, Role.SUPERVISOR)
    segment = await session.get(Segment, segment_id)
    if segment is None:
        raise NotFound("No such segment.", segment_id=segment_id)
    rule = check_definition(segment.definition)
    query = member_query(rule)
    members = set(await session.scalars(query))
    if rule.rfm is not None:
        scores = await rfm_scores(session=session, actor=actor, window_days=rule.rfm.window_days, now=now)
        qualified = {
            s.customer_id for s in scores if s.r >= rule.rfm.r_min and s.f >= rule.rfm.f_min and s.m >= rule.rfm.m_min
        }
        members &= qualified
    return sorted(members)


async def segment_member_query(*, session: AsyncSession, actor: Actor, segment_id: str) -> Select[str] | None:
    """The customer ids of a segment as one SELECT (for set-based work over large audiences); None when the segment
    has an RFM rule, whose scores are computed in Python (then use segment_members)."""
    require_role(actor, Role.MARKETER, Role.SUPERVISOR)
    segment = await session.get(Segment, segment_id)
    if segment is None:
        raise NotFound("No such segment.", segment_id=segment_id)
    rule = check_definition(segment.definition)
    return None if rule.rfm is not None else member_query(rule)


def member_query(rule: SegmentDefinition) -> Select[str]:
    """Customers matching the segment's field rules (everything but RFM)."""
    query = select(Customer.id).where(Customer.merged_into_id.is_(None))
    if rule.exclude_opted_out:
        query = query.where(Customer.sms_opt_out.is_(False))
    if rule.country:
        query = query.where(Customer.country == rule.country.upper())
    if rule.language:
        query = query.where(Customer.language == rule.language)
    for tag in rule.tags:
        query = query.where(
            Customer.id.in_(
                select(customer_tags.c.customer_id)
                .join(Tag, Tag.id == customer_tags.c.tag_id)
                .where(Tag.name == tag.strip().lower())
            )
        )
    return query
