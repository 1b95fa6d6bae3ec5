"""Whose call it is: the one rule (agents who answered a leg, supervisors, admins) in every service that acts on a
call, and a recording listen audited once whatever its byte ranges — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.models import AuditEntry
from crm_core.calls.errors import NotYourCall
from crm_core.calls.models import CallLeg, CallLog, Disposition
from crm_core.calls.service import (
    LISTEN_WINDOW,
    agents_who_answered,
    check_agent_on_call,
    check_call_access,
    link_customer,
    open_recording,
    wrap_up,
)
from crm_core.errors import NotFound, PermissionDenied
from crm_core.tickets.models import TicketLink
from crm_core.tickets.service import create_ticket, link_ticket
from crm_core.users.models import Role
from crm_core.users.service import Actor
from tests.core.helpers import make_actor, make_customer


async def answered_by_1001_rung_at_1002(session: AsyncSession, linkedid: str) -> CallLog:
    """A queue call as the bridge writes it when it ends: agent 1002 was rung first and never answered."""
    now = datetime.now(UTC)
    call = CallLog(
        linkedid=linkedid,
        direction="inbound",
        caller_number="+15551230002",
        queue="support",
        agent="1001",
        offered_at=now - timedelta(minutes=3),
        answered_at=now - timedelta(minutes=2),
        ended_at=now,
        outcome="answered",
        recording_ref=f"/var/spool/asterisk/monitor/{linkedid}.wav",
        disposition_code="sale",
        notes="Upsold",
        wrapped_up_by="1001",
    )
    session.add(call)
    await session.flush()
    session.add_all(
        [
            CallLeg(call_id=call.id, seq=0, agent="1002", channel="Local/1002@agents-00000001;1", rang_at=now),
            CallLeg(
                call_id=call.id,
                seq=1,
                agent="1001",
                channel="Local/1001@agents-00000002;1",
                rang_at=now,
                answered_at=now,
                ended_at=now,
            ),
        ]
    )
    await session.merge(Disposition(code="callback", label="Call back"))
    await session.flush()
    return call


async def parties(session: AsyncSession) -> dict[str, Actor]:
    return {
        "answered": await make_actor(session, Role.AGENT, "agent1001", extension="1001"),
        "rang": await make_actor(session, Role.AGENT, "agent1002", extension="1002"),
        "no_leg": await make_actor(session, Role.AGENT, "agent2001", extension="2001"),
        "no_device": await make_actor(session, Role.AGENT, "agent-without-phone"),
        "supervisor": await make_actor(session, Role.SUPERVISOR, "boss"),
        "admin": await make_actor(session, Role.ADMIN, "root"),
        "marketer": await make_actor(session, Role.MARKETER, "mkt"),
    }


async def test_a_call_belongs_to_the_agents_who_answered_it(session: AsyncSession) -> None:
    call = await answered_by_1001_rung_at_1002(session, "access.1")
    who = await parties(session)
    assert await agents_who_answered(session=session, call=call) == {"1001"}
    for name in ("answered", "supervisor", "admin"):
        await check_call_access(session=session, actor=who[name], call=call)
    for name in ("rang", "no_leg", "no_device", "marketer"):
        with pytest.raises(PermissionDenied) as refused:
            await check_call_access(session=session, actor=who[name], call=call)
        assert refused.value.code == "permission_denied" and refused.value.http_status == 403
        # agents are told it is not their call; a marketer that its role may not
        assert isinstance(refused.value, NotYourCall) is (name != "marketer")
    # a transferred call: the agent who took it over answered a leg too
    call.agent = "2001"
    await session.flush()
    await check_call_access(session=session, actor=who["no_leg"], call=call)
    await check_call_access(session=session, actor=who["answered"], call=call)


def test_on_a_live_call_the_agents_on_it_decide() -> None:
    agent = Actor(user_id="u1", role=Role.AGENT, extension="1002")
    check_agent_on_call(actor=agent, linkedid="live.1", agents={"1002"})
    with pytest.raises(NotYourCall):
        check_agent_on_call(actor=agent, linkedid="live.1", agents={"1001"})
    with pytest.raises(NotYourCall):
        check_agent_on_call(actor=agent, linkedid="live.1", agents=set())
    check_agent_on_call(actor=Actor(user_id="s", role=Role.SUPERVISOR), linkedid="live.1", agents=set())


async def test_only_the_owners_wrap_up_link_and_open_tickets_and_a_refusal_changes_nothing(
    session: AsyncSession,
) -> None:
    call = await answered_by_1001_rung_at_1002(session, "access.2")
    who = await parties(session)
    bob = await make_customer(session, "Bob Example", "+15551230002")
    mallory = await make_customer(session, "Mallory", "+15551230099")
    call.customer_id = bob.id
    await session.flush()
    audited = await session.scalar(select(func.count()).select_from(AuditEntry))
    for name in ("rang", "no_leg", "marketer"):
        with pytest.raises(PermissionDenied):
            await wrap_up(session=session, actor=who[name], linkedid="access.2", disposition_code="callback")
        with pytest.raises(PermissionDenied):
            await link_customer(session=session, actor=who[name], linkedid="access.2", customer_id=mallory.id)
        with pytest.raises(PermissionDenied):
            await create_ticket(session=session, actor=who[name], subject="Not my call", call_id=call.id)
    await session.refresh(call)
    assert (call.disposition_code, call.notes, call.wrapped_up_by, call.customer_id) == (
        "sale",
        "Upsold",
        "1001",
        bob.id,
    )
    assert await session.scalar(select(func.count()).select_from(TicketLink)) == 0
    assert await session.scalar(select(func.count()).select_from(AuditEntry)) == audited
    with pytest.raises(NotFound):
        await create_ticket(session=session, actor=who["answered"], subject="Ghost call", call_id="no-such-call")

    ticket = await create_ticket(session=session, actor=who["answered"], subject="From my call", call_id=call.id)
    with pytest.raises(PermissionDenied):
        await link_ticket(session=session, actor=who["no_leg"], ticket_id=ticket.id, call_id=call.id)
    await link_ticket(session=session, actor=who["supervisor"], ticket_id=ticket.id, call_id=call.id)
    linked = await link_customer(session=session, actor=who["answered"], linkedid="access.2", customer_id=mallory.id)
    assert linked.customer_id == mallory.id
    entry = await session.scalar(select(AuditEntry).where(AuditEntry.entity_type == "call"))
    assert entry is not None and entry.before == {"customer_id": bob.id} and entry.after == {"customer_id": mallory.id}
    done = await wrap_up(session=session, actor=who["admin"], linkedid="access.2", disposition_code="callback")
    assert done.disposition_code == "callback"


async def test_a_listen_is_audited_once_whatever_its_ranges_and_again_after_the_window(session: AsyncSession) -> None:
    call = await answered_by_1001_rung_at_1002(session, "access.3")
    who = await parties(session)

    async def listens(actor: Actor) -> int:
        query = select(func.count()).where(
            AuditEntry.entity_type == "recording", AuditEntry.entity_id == call.id, AuditEntry.actor_id == actor.user_id
        )
        return int(await session.scalar(query) or 0)

    with pytest.raises(PermissionDenied):
        await open_recording(session=session, actor=who["rang"], linkedid="access.3")
    assert await listens(who["rang"]) == 0
    # the first request of a listen is audited, whatever range it asks for (the service is not even told);
    # the further ranges of the same listen are not
    for _range in range(3):
        await open_recording(session=session, actor=who["answered"], linkedid="access.3")
    assert await listens(who["answered"]) == 1
    await open_recording(session=session, actor=who["supervisor"], linkedid="access.3")
    assert await listens(who["supervisor"]) == 1  # someone else's listen is theirs
    # after the window, a request is a new listen
    await session.execute(
        update(AuditEntry)
        .where(AuditEntry.actor_id == who["answered"].user_id)
        .values(at=datetime.now(UTC) - LISTEN_WINDOW - timedelta(seconds=1))
    )
    await open_recording(session=session, actor=who["answered"], linkedid="access.3")
    assert await listens(who["answered"]) == 2
