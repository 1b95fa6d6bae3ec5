"""The knowledge base on real SQLite (FTS5) and PostgreSQL (tsvector + GIN): who writes and reads, full-text search
kept by triggers, suggestions from a ticket's subject, linking and sending a solution to the customer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.models import AuditEntry
from crm_core.errors import NotFound, PermissionDenied, ValidationFailed
from crm_core.kb.errors import SolutionNotPublished
from crm_core.kb.models import KbSolution, KbTicketSolution
from crm_core.kb.service import (
    create_solution,
    get_solution,
    link_solution,
    search_solutions,
    send_solution,
    suggest_for_ticket,
    update_solution,
)
from crm_core.sms.models import SmsMessage
from crm_core.sms.service import record_consent
from crm_core.tickets.models import TicketMessage
from crm_core.tickets.service import create_ticket
from crm_core.users.models import Role
from tests.core.helpers import make_actor, make_customer

SENDER = "+15550000100"


async def _library(session: AsyncSession) -> tuple[dict[str, KbSolution], object, object]:
    boss = await make_actor(session, Role.SUPERVISOR, "boss")
    agent = await make_actor(session, Role.AGENT, "agent", "1001")
    made = {
        "router": await create_solution(
            session=session,
            actor=boss,
            title="Restart the router when the internet is down",
            body="Unplug the router for 30 seconds.\nPlug it back in and wait for the green light.",
            tags="internet, router",
            status="published",
        ),
        "invoice": await create_solution(
            session=session,
            actor=boss,
            title="Download an invoice",
            body="Open My account, then Invoices, and press Download.",
            tags="billing",
            status="published",
        ),
        "draft": await create_solution(
            session=session,
            actor=boss,
            title="Routers of the new series",
            body="Not yet checked by the team.",
            tags="router",
        ),
    }
    return made, boss, agent


async def test_editors_write_agents_read_published_only(session: AsyncSession) -> None:
    made, boss, agent = await _library(session)
    with pytest.raises(PermissionDenied):
        await create_solution(session=session, actor=agent, title="Mine", body="text")  # type: ignore[arg-type]
    found = await search_solutions(session=session, actor=agent, query="router")  # type: ignore[arg-type]
    assert [s.id for s in found.solutions] == [made["router"].id]  # the draft is the editors'
    as_boss = await search_solutions(session=session, actor=boss, query="router")  # type: ignore[arg-type]
    assert {s.id for s in as_boss.solutions} == {made["router"].id, made["draft"].id}
    with pytest.raises(NotFound):
        await get_solution(session=session, actor=agent, solution_id=made["draft"].id)  # type: ignore[arg-type]
    assert made["router"].created_by == made["router"].updated_by == boss.user_id  # type: ignore[attr-defined]
    audited = await session.scalar(
        select(func.count()).select_from(AuditEntry).where(AuditEntry.entity_type == "kb_solution")
    )
    assert audited == 3


async def test_search_stems_words_and_follows_edits(session: AsyncSession) -> None:
    made, boss, agent = await _library(session)
    # "routers" and "restarting" find "router" and "Restart" (stemmed on both databases); every word must match
    hits = await search_solutions(session=session, actor=agent, query="restarting routers")  # type: ignore[arg-type]
    assert [s.title for s in hits.solutions] == ["Restart the router when the internet is down"]
    assert (await search_solutions(session=session, actor=agent, query="router invoice")).solutions == []  # type: ignore[arg-type]
    assert [s.id for s in (await search_solutions(session=session, actor=agent, query="BILLING")).solutions] == [  # type: ignore[arg-type]
        made["invoice"].id
    ]
    later = datetime(2026, 6, 1, tzinfo=UTC)
    await update_solution(
        session=session,
        actor=boss,  # type: ignore[arg-type]
        solution_id=made["invoice"].id,
        title="Get a copy of a bill",
        body="Open My account, then Bills.",
        tags="billing",
        status="published",
        now=later,
    )
    assert (await search_solutions(session=session, actor=agent, query="invoice")).solutions == []  # type: ignore[arg-type]
    assert [s.id for s in (await search_solutions(session=session, actor=agent, query="copy bill")).solutions] == [  # type: ignore[arg-type]
        made["invoice"].id
    ]
    assert made["invoice"].updated_at == later and made["invoice"].updated_by == boss.user_id  # type: ignore[attr-defined]
    # query syntax typed by a person is only words
    for odd in ('"router', "router OR invoice", "router*", "NEAR(router", "'; drop", "router & !x", ":*"):
        await search_solutions(session=session, actor=agent, query=odd)  # type: ignore[arg-type]


async def test_bad_solutions_are_refused_and_nothing_is_written(session: AsyncSession) -> None:
    boss = await make_actor(session, Role.SUPERVISOR, "boss")
    for title, body, status in (
        ("", "body", "draft"),
        ("title", "   ", "draft"),
        ("bad\x00title", "body", "draft"),
        ("title", "bell\x07", "draft"),
        ("title", "body", "public"),
        ("x" * 201, "body", "draft"),
    ):
        with pytest.raises(ValidationFailed):
            await create_solution(session=session, actor=boss, title=title, body=body, status=status)
    assert await session.scalar(select(func.count()).select_from(KbSolution)) == 0


async def test_suggested_from_the_ticket_subject(session: AsyncSession) -> None:
    made, _boss, agent = await _library(session)
    ticket = await create_ticket(session=session, actor=agent, subject="My internet is down again")  # type: ignore[arg-type]
    suggested = await suggest_for_ticket(session=session, actor=agent, ticket_id=ticket.id)  # type: ignore[arg-type]
    assert [s.id for s in suggested] == [made["router"].id]  # published only, the draft never suggested
    other = await create_ticket(session=session, actor=agent, subject="Where is the invoice for May?")  # type: ignore[arg-type]
    suggested = await suggest_for_ticket(session=session, actor=agent, ticket_id=other.id)  # type: ignore[arg-type]
    assert [s.id for s in suggested] == [made["invoice"].id]
    nothing = await create_ticket(session=session, actor=agent, subject="Hello")  # type: ignore[arg-type]
    assert await suggest_for_ticket(session=session, actor=agent, ticket_id=nothing.id) == []  # type: ignore[arg-type]


async def test_link_and_send_as_reply_and_sms(session: AsyncSession) -> None:
    made, _boss, agent = await _library(session)
    other_agent = await make_actor(session, Role.AGENT, "other", "1002")
    alice = await make_customer(session, "Alice Example", "+15557010002")
    ticket = await create_ticket(
        session=session,
        actor=agent,  # type: ignore[arg-type]
        subject="Internet down",
        customer_id=alice.id,
        assignee_id=agent.user_id,  # type: ignore[attr-defined]
    )
    with pytest.raises(PermissionDenied):  # someone else's ticket
        await link_solution(session=session, actor=other_agent, ticket_id=ticket.id, solution_id=made["router"].id)
    with pytest.raises(NotFound):  # a draft is not there for an agent
        await link_solution(session=session, actor=agent, ticket_id=ticket.id, solution_id=made["draft"].id)  # type: ignore[arg-type]
    sent = await send_solution(
        session=session,
        actor=agent,  # type: ignore[arg-type]
        ticket_id=ticket.id,
        solution_id=made["router"].id,
        sms_sender=SENDER,
    )
    reply = await session.get(TicketMessage, sent.link.message_id)
    assert reply is not None and reply.kind == "reply" and "Unplug the router" in reply.body
    assert ticket.first_response_at is not None  # a reply the customer sees: the first response
    assert sent.sms is not None and sent.sms_skipped is None
    sms = await session.get(SmsMessage, sent.sms.id)
    assert sms is not None and (sms.status, sms.to_number, sms.from_number) == ("queued", "+15557010002", SENDER)
    assert sms.body.startswith(f"Ticket {ticket.number}: Restart the router")
    # linking again changes nothing; sending again is a new reply (the agent pressed it again)
    again = await link_solution(session=session, actor=agent, ticket_id=ticket.id, solution_id=made["router"].id)  # type: ignore[arg-type]
    assert again.id == sent.link.id
    assert await session.scalar(select(func.count()).select_from(KbTicketSolution)) == 1

    await record_consent(session=session, number="+15557010002", opted_out=True, source="keyword", detail="STOP")
    opted = await send_solution(
        session=session,
        actor=agent,  # type: ignore[arg-type]
        ticket_id=ticket.id,
        solution_id=made["invoice"].id,
        sms_sender=SENDER,
    )
    assert opted.sms is None and opted.sms_skipped == "The customer opted out of SMS."
    assert await session.scalar(select(func.count()).select_from(SmsMessage)) == 1


async def test_a_draft_cannot_be_linked_even_by_an_editor(session: AsyncSession) -> None:
    made, boss, agent = await _library(session)
    ticket = await create_ticket(session=session, actor=agent, subject="Routers")  # type: ignore[arg-type]
    with pytest.raises(SolutionNotPublished):
        await link_solution(session=session, actor=boss, ticket_id=ticket.id, solution_id=made["draft"].id)  # type: ignore[arg-type]
