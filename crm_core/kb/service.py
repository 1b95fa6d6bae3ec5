"""Knowledge-base services: write and publish solutions (supervisors, admins), read and search them (agents see the
published ones), suggest them for a ticket from its subject, link one to a ticket and send it to the customer — as a
customer-visible reply on the ticket and, when the customer has a mobile number that has not opted out, by SMS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.db import utcnow
from crm_core.errors import NotFound, PermissionDenied, ValidationFailed
from crm_core.inputs import check_text, column_length
from crm_core.kb.errors import InvalidSolution, SolutionNotPublished
from crm_core.kb.models import SOLUTION_STATUSES, KbSolution, KbTicketSolution
from crm_core.kb.search import POSTGRES_DOCUMENT, query_words
from crm_core.sms.models import SmsMessage
from crm_core.sms.service import MAX_BODY, is_opted_out, queue_outbound
from crm_core.tickets.csat import customer_mobile
from crm_core.tickets.models import Ticket
from crm_core.tickets.service import add_message, get_ticket
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

TITLE_LENGTH = column_length(KbSolution.title)
TAGS_LENGTH = column_length(KbSolution.tags)
BODY_LENGTH = 19_000  # a solution is sent as one ticket message (at most 20,000 with its title)
MAX_TAGS = 20
EDITORS = (Role.SUPERVISOR,)  # and admins
READERS = (Role.AGENT, Role.SUPERVISOR)


def _tags_of(raw: str | list[str]) -> str:
    items = raw if isinstance(raw, list) else raw.replace(";", ",").split(",")
    tags: list[str] = []
    for item in items:
        tag = " ".join(str(item).lower().split())
        if tag and tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise InvalidSolution(f"A solution has at most {MAX_TAGS} tags.", field="tags")
    joined = ", ".join(tags)
    return check_text(joined, field="tags", max_length=TAGS_LENGTH)


def check_solution(*, title: str, body: str, status: str) -> tuple[str, str]:
    """The title (one line) and body (plain text, line breaks kept, no control characters), or InvalidSolution."""
    title = check_text(title, field="title", max_length=TITLE_LENGTH, required=True)
    body = check_text(body.replace("\r\n", "\n"), field="body", max_length=BODY_LENGTH, multiline=True, required=True)
    if status not in SOLUTION_STATUSES:
        raise InvalidSolution("status must be draft or published.", field="status")
    return title, body.strip()


def _snapshot(solution: KbSolution) -> dict[str, Any]:
    return {"title": solution.title, "status": solution.status, "tags": solution.tags, "length": len(solution.body)}


async def create_solution(
    *,
    session: AsyncSession,
    actor: Actor,
    title: str,
    body: str,
    tags: str | list[str] = "",
    status: str = "draft",
    now: datetime | None = None,
) -> KbSolution:
    require_role(actor, *EDITORS)
    title, body = check_solution(title=title, body=body, status=status)
    when = now or utcnow()
    solution = KbSolution(
        title=title,
        body=body,
        tags=_tags_of(tags),
        status=status,
        created_by=actor.user_id,
        created_at=when,
        updated_by=actor.user_id,
        updated_at=when,
        published_at=when if status == "published" else None,
    )
    session.add(solution)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="kb_solution",
        entity_id=solution.id,
        after=_snapshot(solution),
    )
    return solution


async def update_solution(
    *,
    session: AsyncSession,
    actor: Actor,
    solution_id: str,
    title: str,
    body: str,
    tags: str | list[str],
    status: str,
    now: datetime | None = None,
) -> KbSolution:
    """Replace a solution's text, tags and status (draft ↔ published); who and when are kept."""
    require_role(actor, *EDITORS)
    title, body = check_solution(title=title, body=body, status=status)
    tag_text = _tags_of(tags)
    solution = await session.get(KbSolution, solution_id, with_for_update=True)
    if solution is None:
        raise NotFound("No such solution.", solution_id=solution_id)
    before = _snapshot(solution)
    when = now or utcnow()
    if status == "published" and solution.status != "published":
        solution.published_at = when
    solution.title, solution.body, solution.tags, solution.status = title, body, tag_text, status
    solution.updated_by, solution.updated_at = actor.user_id, when
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="kb_solution",
        entity_id=solution.id,
        before=before,
        after=_snapshot(solution),
    )
    return solution


async def get_solution(*, session: AsyncSession, actor: Actor, solution_id: str) -> KbSolution:
    """A solution: agents read published ones only (a draft is as if it did not exist for them)."""
    require_role(actor, *READERS)
    solution = await session.get(KbSolution, solution_id)
    if solution is None or (solution.status != "published" and not _edits(actor)):
        raise NotFound("No such solution.", solution_id=solution_id)
    return solution


def _edits(actor: Actor) -> bool:
    return actor.role in (Role.SUPERVISOR, Role.ADMIN)


def _matching(statement: Select[Any], dialect: str, words: list[str], *, any_word: bool) -> Select[Any]:
    """Only solutions holding the words (every word, or any for a suggestion), best match first."""
    if dialect == "postgresql":
        # each word quoted as a lexeme: to_tsquery stems it as the index did, and nothing typed becomes syntax
        joined = (" | " if any_word else " & ").join("'" + w.replace("'", "").replace("\\", "") + "'" for w in words)
        return (
            statement.where(text(f"{POSTGRES_DOCUMENT} @@ to_tsquery('english', :kb_query)"))
            .order_by(
                text(f"ts_rank({POSTGRES_DOCUMENT}, to_tsquery('english', :kb_query)) DESC"),
                KbSolution.updated_at.desc(),
            )
            .params(kb_query=joined)
        )
    match = (" OR " if any_word else " ").join('"' + w.replace('"', "") + '"' for w in words)
    ranked = (
        select(
            literal_column("rowid").label("key"),
            literal_column("bm25(kb_solutions_fts, 10.0, 5.0, 1.0)").label("score"),
        )
        .select_from(text("kb_solutions_fts"))
        .where(text("kb_solutions_fts MATCH :kb_match"))
        .subquery("ranked")
    )
    return (
        statement.join(ranked, ranked.c.key == KbSolution.search_key)
        .order_by(ranked.c.score, KbSolution.updated_at.desc())
        .params(kb_match=match)
    )


@dataclass(frozen=True, slots=True)
class SolutionPage:
    solutions: list[KbSolution]
    query: str
    status: str | None


async def search_solutions(
    *, session: AsyncSession, actor: Actor, query: str = "", status: str | None = None, limit: int = 50
) -> SolutionPage:
    """Solutions holding every word of `query` (best first), or the newest when there is no query. Agents see the
    published ones only; editors may ask for drafts."""
    require_role(actor, *READERS)
    if status is not None and status not in SOLUTION_STATUSES:
        raise ValidationFailed("status must be draft or published.", field="status")
    if len(query) > 200:
        raise ValidationFailed("A search is at most 200 characters.", field="q")
    if not _edits(actor):
        status = "published"
    statement = select(KbSolution)
    if status is not None:
        statement = statement.where(KbSolution.status == status)
    words = query_words(query)
    if words:
        statement = _matching(statement, session.get_bind().dialect.name, words, any_word=False)
    else:
        statement = statement.order_by(KbSolution.updated_at.desc())
    return SolutionPage(list(await session.scalars(statement.limit(limit))), query, status)


async def suggest_for_text(*, session: AsyncSession, subject: str, limit: int = 3) -> list[KbSolution]:
    """Published solutions sharing words with `subject` (a ticket's), best match first; none for an empty one."""
    words = query_words(subject, drop_stop_words=True)
    if not words:
        return []
    statement = _matching(
        select(KbSolution).where(KbSolution.status == "published"),
        session.get_bind().dialect.name,
        words,
        any_word=True,
    )
    return list(await session.scalars(statement.limit(limit)))


async def suggest_for_ticket(
    *, session: AsyncSession, actor: Actor, ticket_id: str, limit: int = 3
) -> list[KbSolution]:
    ticket = await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    return await suggest_for_text(session=session, subject=ticket.subject, limit=limit)


@dataclass(frozen=True, slots=True)
class LinkedSolution:
    link: KbTicketSolution
    solution: KbSolution


async def linked_solutions(*, session: AsyncSession, actor: Actor, ticket_id: str) -> list[LinkedSolution]:
    await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    rows = await session.execute(
        select(KbTicketSolution, KbSolution)
        .join(KbSolution, KbSolution.id == KbTicketSolution.solution_id)
        .where(KbTicketSolution.ticket_id == ticket_id)
        .order_by(KbTicketSolution.linked_at)
    )
    return [LinkedSolution(link, solution) for link, solution in rows]


def _check_ticket_owner(actor: Actor, ticket: Ticket) -> None:
    """Sending to a customer is the assignee's (or an unassigned ticket's taker's); supervisors and admins any."""
    if actor.role in (Role.SUPERVISOR, Role.ADMIN):
        return
    if ticket.assignee_id not in (None, actor.user_id):
        raise PermissionDenied("This ticket is assigned to another agent.", ticket_id=ticket.id)


async def link_solution(
    *, session: AsyncSession, actor: Actor, ticket_id: str, solution_id: str, now: datetime | None = None
) -> KbTicketSolution:
    """Link a published solution to a ticket (linking it again changes nothing)."""
    ticket = await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    _check_ticket_owner(actor, ticket)
    solution = await get_solution(session=session, actor=actor, solution_id=solution_id)
    if solution.status != "published":
        raise SolutionNotPublished("Publish the solution before linking it to a ticket.", solution_id=solution.id)
    link = await session.scalar(
        select(KbTicketSolution).where(
            KbTicketSolution.ticket_id == ticket.id, KbTicketSolution.solution_id == solution.id
        )
    )
    if link is not None:
        return link
    link = KbTicketSolution(
        ticket_id=ticket.id, solution_id=solution.id, linked_by=actor.user_id, linked_at=now or utcnow()
    )
    session.add(link)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="kb_ticket_solution",
        entity_id=link.id,
        after={"ticket_id": ticket.id, "solution_id": solution.id},
    )
    return link


@dataclass(frozen=True, slots=True)
class Sent:
    link: KbTicketSolution
    sms: SmsMessage | None
    sms_skipped: str | None  # why no SMS went (no mobile, opted out, no sender), None when one did


def solution_text(solution: KbSolution) -> str:
    return f"{solution.title}\n\n{solution.body}"


def sms_text(solution: KbSolution, ticket: Ticket) -> str:
    text_ = f"Ticket {ticket.number}: {solution.title}\n{solution.body}"
    return text_ if len(text_) <= MAX_BODY else text_[: MAX_BODY - 1] + "…"


async def send_solution(
    *,
    session: AsyncSession,
    actor: Actor,
    ticket_id: str,
    solution_id: str,
    sms_sender: str | None,
    now: datetime | None = None,
) -> Sent:
    """Link (if not yet) and send a solution: a customer-visible reply on the ticket (it counts as the agent's
    response for the SLA clocks), and an SMS through the outbox when the customer has a mobile that did not opt
    out and a sender is configured. Everything in the caller's transaction: the SMS leaves only if it commits."""
    when = now or utcnow()
    link = await link_solution(session=session, actor=actor, ticket_id=ticket_id, solution_id=solution_id, now=when)
    ticket = await get_ticket(session=session, actor=actor, ticket_id=ticket_id)
    solution = await get_solution(session=session, actor=actor, solution_id=solution_id)
    message = await add_message(
        session=session, actor=actor, ticket_id=ticket.id, body=solution_text(solution), kind="reply", now=when
    )
    link.message_id, link.sent_at, link.sent_by = message.id, when, actor.user_id
    sms: SmsMessage | None = None
    skipped: str | None = None
    number = await customer_mobile(session=session, customer_id=ticket.customer_id)
    if number is None:
        skipped = "The customer has no mobile number."
    elif await is_opted_out(session=session, number=number):
        skipped = "The customer opted out of SMS."
    elif not sms_sender:
        skipped = "No SMS sender is configured."
    else:
        sms = queue_outbound(
            session,
            to=number,
            sender=sms_sender,
            body=sms_text(solution, ticket),
            customer_id=ticket.customer_id,
            author_id=actor.user_id,
        )
        await session.flush()
        link.sms_id = sms.id
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="kb_ticket_solution",
        entity_id=link.id,
        after={"sent": True, "message_id": message.id, "sms_id": link.sms_id, "sms_skipped": skipped},
    )
    return Sent(link, sms, skipped)
