"""A ticket's watchers, tags and merging a duplicate, over HTTP against the served app: each change audited, the
ticket's people told live (and nobody else), the merged-away ticket leading to the survivor, bad input refused."""

from __future__ import annotations

import html

import aiohttp
from sqlalchemy import func, select

from crm_core.audit.models import AuditEntry
from crm_core.calls.models import CallLog
from crm_core.sla.models import SlaClock
from crm_core.sla.service import active_clocks, create_policy
from crm_core.tickets.models import Ticket, TicketLink, TicketMessage, TicketTag, TicketWatcher
from crm_core.tickets.service import add_message, create_ticket
from tests.desktop.live import XSS_NAME, LiveCenter, wait_event
from tests.desktop.test_authorization import signed_in_as
from tests.desktop.test_tickets import HX, _user, get, numbers


async def post(http: aiohttp.ClientSession, url: str, data: dict[str, str], token: str) -> tuple[int, str]:
    async with http.post(url, data=data, headers={**HX, "X-CSRF-Token": token}) as response:
        return response.status, await response.text()


async def audit_of(center: LiveCenter, entity_id: str) -> list[tuple[str, str]]:
    async with center.runtime.sessions() as db:
        rows = await db.execute(
            select(AuditEntry.action, AuditEntry.entity_type)
            .where(AuditEntry.entity_id == entity_id)
            .order_by(AuditEntry.at, AuditEntry.id)
        )
        return [(a, e) for a, e in rows]


async def test_watchers_and_tags_are_audited_and_the_watchers_see_changes_live(center: LiveCenter) -> None:
    agent = await _user(center, "agent1001")
    colleague = await _user(center, "agent1002")
    async with center.runtime.unit_of_work() as db:
        ticket = await create_ticket(session=db, actor=agent, subject="Bill too high", assignee_id=agent.user_id)
        other = await create_ticket(session=db, actor=agent, subject="Another one")
    watcher_socket = await center.socket("agent1002", "/agent")
    bystander = await center.socket("agent2001", "/agent")
    http, token = await signed_in_as(center, "agent1001")
    page_url = f"{center.base_url}/tickets/{ticket.id}"
    try:
        # the assignee adds a colleague as watcher, and a tag; bad tags are refused and change nothing
        status, body = await post(http, f"{page_url}/watchers", {"user_id": colleague.user_id}, token)
        assert status == 200 and 'data-watcher="agent1002"' in body
        status, body = await post(http, f"{page_url}/tags", {"tag": " Billing "}, token)
        assert status == 200 and 'data-tag="billing"' in body
        seen = await wait_event(watcher_socket, "ticket_changed", lambda d: d["change"] == "tags")
        assert seen["ticket_id"] == ticket.id and "audience" not in seen
        for bad in ("two words", "=cmd|' /C calc'!A0", "x" * 49, " "):
            status, body = await post(http, f"{page_url}/tags", {"tag": bad}, token)
            assert status == 422 and "tag" in body.lower(), bad
        status, body = await post(http, f"{page_url}/watchers", {"user_id": "nobody"}, token)
        assert status == 422

        # a change by the assignee reaches the watcher (not the assignee, who made it, nor a bystander)
        status, _ = await post(http, page_url, {"status": "pending"}, token)
        assert status == 200
        seen = await wait_event(watcher_socket, "ticket_changed", lambda d: d["change"] == "status")
        assert seen["ticket_number"] == ticket.number
        async with center.runtime.unit_of_work() as db:
            await add_message(session=db, actor=colleague, ticket_id=ticket.id, body="Looked at it", kind="note")

        # the list filters by tag
        status, body = await get(http, f"{center.base_url}/tickets?tag=billing", headers=HX)
        assert status == 200 and numbers(body) == [ticket.number]
        status, body = await get(http, f"{center.base_url}/tickets?tag=" + "y" * 49, headers=HX)
        assert status == 422

        # the tag comes off, the watcher goes
        status, body = await post(http, f"{page_url}/tags", {"tag": "billing", "action": "remove"}, token)
        assert status == 200 and 'data-tag="billing"' not in body
        status, body = await post(
            http, f"{page_url}/watchers", {"user_id": colleague.user_id, "action": "remove"}, token
        )
        assert status == 200 and 'data-watcher="agent1002"' not in body
    finally:
        await http.close()
    # an agent takes only themselves off another's ticket's watchers
    http, token = await signed_in_as(center, "agent2001")
    try:
        status, _ = await post(http, f"{center.base_url}/tickets/{other.id}/watchers", {}, token)
        assert status == 200
        status, _ = await post(http, page_url + "/watchers", {"user_id": agent.user_id, "action": "remove"}, token)
        assert status == 403  # someone else off someone else's ticket: only its assignee or a supervisor
        status, _ = await post(http, f"{center.base_url}/tickets/{other.id}/watchers", {"action": "remove"}, token)
        assert status == 200
    finally:
        await http.close()
    try:
        assert [d["change"] for e, d in bystander.received if e == "ticket_changed"] == []
        changes = [d["change"] for e, d in watcher_socket.received if e == "ticket_changed"]
        # told of being added, the tag, the status, the tag taken off and being taken off; not of its own note
        assert changes == ["watchers", "tags", "status", "tags", "watchers"], changes
    finally:
        await watcher_socket.disconnect()
        await bystander.disconnect()
    assert await audit_of(center, ticket.id) == [
        ("create", "ticket"),
        ("create", "ticket_watcher"),
        ("update", "ticket"),
        ("update", "ticket"),
        ("update", "ticket"),
        ("delete", "ticket_watcher"),
    ]
    async with center.runtime.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(TicketTag)) == 0
        assert await db.scalar(select(func.count()).select_from(TicketWatcher)) == 0


async def test_merging_a_duplicate_moves_everything_and_the_duplicate_leads_to_the_survivor(
    center: LiveCenter,
) -> None:
    agent = await _user(center, "agent1001")
    colleague = await _user(center, "agent1002")
    async with center.runtime.unit_of_work() as db:
        await create_policy(session=db, actor=_system(), name="Std", first_response_minutes=60, resolution_minutes=600)
        survivor = await create_ticket(session=db, actor=agent, subject="No internet", assignee_id=agent.user_id)
        duplicate = await create_ticket(
            session=db,
            actor=colleague,
            subject=XSS_NAME,
            assignee_id=colleague.user_id,
            customer_id=center.customers["Bob Example"],
        )
        call = CallLog(linkedid="merge.1", direction="inbound", caller_number="+15551230002")
        db.add(call)
        await db.flush()
        db.add(TicketLink(ticket_id=duplicate.id, call_id=call.id))
        db.add(TicketTag(ticket_id=duplicate.id, tag="outage"))
        await add_message(session=db, actor=colleague, ticket_id=duplicate.id, body="Reset the router?", kind="reply")
        await add_message(session=db, actor=colleague, ticket_id=duplicate.id, body="Same street", kind="note")
        someone_elses = await create_ticket(
            session=db, actor=colleague, subject="Colleague's own", assignee_id=colleague.user_id
        )
    colleague_socket = await center.socket("agent1002", "/agent")
    http, token = await signed_in_as(center, "agent1001")
    base = f"{center.base_url}/tickets"
    try:
        # refused: not a number, no such ticket, itself, and (for an agent) a ticket that is someone else's
        for value, code in (
            ("soon", 422),
            ("999999", 422),
            (str(survivor.number), 422),
            (str(someone_elses.number), 403),
        ):
            status, _ = await post(http, f"{base}/{survivor.id}/merge", {"duplicate": value}, token)
            assert status == code, value
        async with center.runtime.sessions() as db:
            assert (await db.get(Ticket, someone_elses.id)).merged_into_id is None  # type: ignore[union-attr]
    finally:
        await http.close()
    # a supervisor merges the colleague's duplicate into the agent's ticket
    http, token = await signed_in_as(center, "boss")
    try:
        status, body = await post(http, f"{base}/{survivor.id}/merge", {"duplicate": f"#{duplicate.number}"}, token)
        assert status == 200, body
        assert "Reset the router?" in body and "Same street" in body and 'data-tag="outage"' in body
        assert 'data-watcher="agent1002"' in body  # the duplicate's assignee follows the survivor now
        assert html.escape(XSS_NAME) in body and XSS_NAME not in body
        async with http.get(f"{base}/{duplicate.id}", allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == f"/tickets/{survivor.id}?merged={duplicate.number}"
        status, page = await get(http, f"{base}/{duplicate.id}")
        assert status == 200 and f"Ticket {duplicate.number} was merged into this one." in page
        status, _ = await post(http, f"{base}/{survivor.id}/merge", {"duplicate": str(duplicate.number)}, token)
        assert status == 422  # once only
        seen = await wait_event(colleague_socket, "ticket_changed", lambda d: d["ticket_id"] == duplicate.id)
        assert seen["change"] == "merged" and seen["merged_into_id"] == survivor.id
    finally:
        await http.close()
        await colleague_socket.disconnect()
    async with center.runtime.sessions() as db:
        gone = await db.get(Ticket, duplicate.id)
        kept = await db.get(Ticket, survivor.id)
        assert gone is not None and kept is not None
        assert gone.status == "closed" and gone.merged_into_id == survivor.id
        assert kept.customer_id == center.customers["Bob Example"]
        assert await db.scalar(select(func.count()).where(TicketMessage.ticket_id == duplicate.id)) == 0
        bodies = sorted(await db.scalars(select(TicketMessage.body).where(TicketMessage.ticket_id == survivor.id)))
        assert bodies == [
            "Reset the router?",
            "Same street",
            f"Ticket {duplicate.number} ({XSS_NAME}) was merged into this one.",
        ]
        assert list(await db.scalars(select(TicketLink.ticket_id).where(TicketLink.call_id == call.id))) == [
            survivor.id
        ]
        assert await active_clocks(session=db, ticket_id=duplicate.id) == []
        statuses = set(await db.scalars(select(SlaClock.status).where(SlaClock.ticket_id == duplicate.id)))
        assert statuses <= {"cancelled", "met"}  # its first response was met by the reply; nothing breached
    assert (await audit_of(center, duplicate.id))[-1] == ("merge", "ticket")
    assert (await audit_of(center, survivor.id))[-1] == ("update", "ticket")


def _system():  # type: ignore[no-untyped-def]
    from crm_core.users.service import SYSTEM

    return SYSTEM
