"""The desk's tickets over HTTP against the served app: saved views, filters, sort, pages, the ticket page with
its conversation, notes and SLA clocks, every change audited, and an SLA breach pushed live to the rooms."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import aiohttp
from sqlalchemy import select

from crm_core.audit.models import AuditEntry
from crm_core.sla.models import SlaCalendar, SlaPolicy
from crm_core.sla.scheduler import SlaScheduler
from crm_core.sla.service import active_clocks, create_policy
from crm_core.tickets.models import Ticket
from crm_core.tickets.service import create_ticket
from crm_core.users.models import User
from crm_core.users.service import SYSTEM, Actor
from tests.desktop.live import XSS_NAME, LiveCenter, wait_event
from tests.desktop.test_authorization import signed_in_as

HX = {"HX-Request": "true"}


async def _user(center: LiveCenter, username: str) -> Actor:
    async with center.runtime.sessions() as db:
        user = await db.scalar(select(User).where(User.username == username))
        assert user is not None
        return Actor.of(user)


def numbers(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr data-ticket="(\d+)">', page)]


async def get(http: aiohttp.ClientSession, url: str, **kwargs: object) -> tuple[int, str]:
    async with http.get(url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, await response.text()


async def test_saved_views_filters_sort_and_pages(center: LiveCenter) -> None:
    agent = await _user(center, "agent1001")
    other = await _user(center, "agent2001")
    async with center.runtime.unit_of_work() as db:
        await create_policy(session=db, actor=SYSTEM, name="Std", first_response_minutes=60, resolution_minutes=600)
        mine = await create_ticket(
            session=db, actor=agent, subject="Mine, high", priority="high", assignee_id=agent.user_id
        )
        team = await create_ticket(
            session=db, actor=other, subject="Support team's", team="support", assignee_id=other.user_id
        )
        pending = await create_ticket(session=db, actor=agent, subject="Waiting on the customer", team="sales")
        xss = await create_ticket(
            session=db, actor=agent, subject=XSS_NAME, customer_id=center.customers["Bob Example"]
        )
        bulk = [await create_ticket(session=db, actor=agent, subject=f"Bulk {i}") for i in range(27)]
        (await db.get(Ticket, pending.id)).status = "pending"
    http, _token = await signed_in_as(center, "agent1001")
    try:
        base = f"{center.base_url}/tickets"
        status, page = await get(http, f"{base}?view=mine")
        assert status == 200 and numbers(page) == [mine.number]
        assert "Tickets</a>" in page  # the nav link
        _, page = await get(http, f"{base}?view=team", headers=HX)
        assert numbers(page) == [team.number] and "<html" not in page  # htmx gets only the results
        _, page = await get(http, f"{base}?view=pending")
        assert numbers(page) == [pending.number]
        _, page = await get(http, f"{base}?view=unassigned&sort=number")
        unassigned = [t.number for t in (pending, xss, *bulk)]
        seeded = numbers(page)[0]  # the ticket of the live center's seed data (unassigned, opened first)
        assert numbers(page) == [seeded, *unassigned[:24]] and 'rel="next"' in page
        _, page = await get(http, f"{base}?view=unassigned&sort=number&page=2")
        assert numbers(page) == unassigned[24:] and 'rel="prev"' in page and 'rel="next"' not in page
        _, page = await get(http, f"{base}?priority=high")
        assert numbers(page) == [mine.number]
        _, page = await get(http, f"{base}?customer={center.customers['Bob Example']}")
        assert numbers(page) == [xss.number]
        assert XSS_NAME not in page and html.escape(XSS_NAME) in page
        _, page = await get(http, f"{base}?age=2")
        assert numbers(page) == []
        _, page = await get(http, f"{base}?status=pending&view=all")
        assert numbers(page) == [pending.number]
        _, page = await get(http, f"{base}?view=all&sort=-number")
        assert numbers(page)[0] == bulk[-1].number
        # every row shows its next SLA clock with the business time left
        assert re.search(
            r'data-clock-state="running">First response</span> (1 h 00 min|59 min) of business time left', page
        )
        for bad, field in (("priority=soon", "priority"), ("view=everything", "view"), ("age=-1", "age")):
            async with http.get(f"{base}?{bad}", headers={"Accept": "application/json"}) as response:
                assert response.status == 422, bad
                assert field in (await response.json())["message"]
    finally:
        await http.close()


async def test_reply_note_pending_and_resolve_on_the_ticket_page_all_audited(center: LiveCenter) -> None:
    agent = await _user(center, "agent1001")
    async with center.runtime.unit_of_work() as db:
        await create_policy(
            session=db,
            actor=SYSTEM,
            name="Std",
            first_response_minutes=60,
            next_response_minutes=120,
            resolution_minutes=600,
        )
        ticket = await create_ticket(
            session=db, actor=agent, subject="Line drops", customer_id=center.customers["Alice Example"]
        )
    http, token = await signed_in_as(center, "agent1001")
    url = f"{center.base_url}/tickets/{ticket.id}"
    headers = {**HX, "X-CSRF-Token": token}
    try:
        status, page = await get(http, url)
        assert status == 200 and f"Ticket {ticket.number}: Line drops" in page
        assert 'data-clock-state="running"' in page and "First response" in page and "Alice Example" in page
        async with http.post(
            f"{url}/messages", data={"body": "Please restart the router", "kind": "reply"}, headers=headers
        ) as r:
            assert r.status == 200
            page = await r.text()
        conversation, notes = page.split('id="internal-notes"')
        assert "Please restart the router" in conversation and "Please restart the router" not in notes
        assert 'First response</strong> <span class="badge">met' in page
        assert 'Next response</strong> <span class="badge">running' in page
        async with http.post(
            f"{url}/messages", data={"body": "Customer sounded upset", "kind": "note"}, headers=headers
        ) as r:
            page = await r.text()
        conversation, notes = page.split('id="internal-notes"')
        assert "Customer sounded upset" in notes and "Customer sounded upset" not in conversation
        async with http.post(f"{url}/messages", data={"body": "   ", "kind": "reply"}, headers=headers) as r:
            assert r.status == 422 and "empty" in (await r.json())["message"]
        async with http.post(url, data={"status": "pending"}, headers=headers) as r:
            page = await r.text()
        assert 'data-status="pending"' in page and 'data-clock-state="paused"' in page
        assert "paused, " in page and 'data-clock-state="running"' not in page
        async with http.post(url, data={"status": "finished"}, headers=headers) as r:
            assert r.status == 422 and "status" in (await r.json())["message"]
        marketer = await _user(center, "mkt")
        async with http.post(url, data={"assignee_id": marketer.user_id}, headers=headers) as r:
            assert r.status == 422 and (await r.json())["details"]["field"] == "assignee_id"
        async with http.post(url, data={"status": "resolved"}, headers=headers) as r:
            page = await r.text()
        assert 'data-status="resolved"' in page and 'Resolution</strong> <span class="badge">met' in page
        async with http.post(url, data={"body": "x"}, headers={**HX}) as r:  # no CSRF header
            assert r.status in (400, 403)
    finally:
        await http.close()
    async with center.runtime.sessions() as db:
        audited = list(await db.scalars(select(AuditEntry).where(AuditEntry.actor_id == agent.user_id)))
    kinds = sorted((a.action, a.entity_type) for a in audited if a.entity_type in ("ticket", "ticket_message"))
    # the refused changes (bad status, a marketer as assignee, an empty reply) left nothing behind
    assert kinds == [
        ("create", "ticket"),
        ("create", "ticket_message"),
        ("create", "ticket_message"),
        ("update", "ticket"),
        ("update", "ticket"),
    ]


async def test_a_breach_reaches_the_assignee_and_the_supervisors_once(center: LiveCenter) -> None:
    agent = await _user(center, "agent1001")
    opened = datetime.now(UTC) - timedelta(hours=2)
    async with center.runtime.unit_of_work() as db:
        await create_policy(session=db, actor=SYSTEM, name="Fast", first_response_minutes=30)
        ticket = await create_ticket(
            session=db, actor=agent, subject="No dial tone", assignee_id=agent.user_id, now=opened
        )
        [clock] = await active_clocks(session=db, ticket_id=ticket.id)
    supervisor = await center.socket("boss", "/supervisor")
    own = await center.socket("agent1001", "/agent")
    bystander = await center.socket("agent2001", "/agent")
    try:
        scheduler = SlaScheduler(center.runtime.sessions, center.runtime.bus)
        assert await scheduler.run_once() == 1
        assert await scheduler.run_once() == 0
        seen = await wait_event(supervisor, "sla_breach", lambda d: d["ticket_number"] == ticket.number)
        assert seen["clock_id"] == clock.id and seen["kind"] == "first_response"
        await wait_event(own, "sla_breach", lambda d: d["ticket_number"] == ticket.number)
        await wait_event(supervisor, "sla_warning", lambda d: d["ticket_number"] == ticket.number)
        for client in (supervisor, own):
            names = [e for e, d in client.received if e in ("sla_breach", "sla_warning")]
            assert sorted(names) == ["sla_breach", "sla_warning"]
        assert not [e for e, _d in bystander.received if e.startswith("sla_")]
    finally:
        for client in (supervisor, own, bystander):
            await client.disconnect()


async def test_a_ticket_by_hand_opens_its_page_and_bad_input_is_refused(center: LiveCenter) -> None:
    http, token = await signed_in_as(center, "agent1002")
    headers = {**HX, "X-CSRF-Token": token}
    try:
        form = {"subject": "Wants a paper invoice", "priority": "low", "team": "support"}
        async with http.post(f"{center.base_url}/tickets", data=form, headers=headers) as r:
            assert r.status == 200
            target = r.headers["HX-Redirect"]
        status, page = await get(http, f"{center.base_url}{target}")
        assert status == 200 and "Wants a paper invoice" in page and "team support" in page
        for bad, field in (({"subject": " "}, "subject"), ({"subject": "x", "priority": "asap"}, "priority")):
            async with http.post(f"{center.base_url}/tickets", data=bad, headers=headers) as r:
                assert r.status == 422 and field in (await r.json())["message"].lower()
        async with http.post(
            f"{center.base_url}/tickets", data={"subject": "x", "customer_id": "nobody"}, headers=headers
        ) as r:
            assert r.status == 422 and (await r.json())["details"]["field"] == "customer_id"
    finally:
        await http.close()
    async with center.runtime.sessions() as db:
        subjects = list(await db.scalars(select(Ticket.subject)))
    assert sorted(subjects) == ["Router keeps rebooting", "Wants a paper invoice"]


ICS = (
    b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20261225\r\nDTEND;VALUE=DATE:20261227\r\n"
    b"END:VEVENT\r\nEND:VCALENDAR\r\n"
)


async def test_a_supervisor_sets_up_calendars_and_policies_and_switching_one_off_stops_the_clocks(
    center: LiveCenter,
) -> None:
    agent = await _user(center, "agent1001")
    async with center.runtime.unit_of_work() as db:
        ticket = await create_ticket(session=db, actor=agent, subject="Slow internet", team="support")
    http, token = await signed_in_as(center, "boss")
    headers = {**HX, "X-CSRF-Token": token}
    base = f"{center.base_url}/tickets/sla"
    try:
        calendar = {
            "team": "support",
            "time_zone": "Europe/Berlin",
            "blocks": "mon-fri 09:00-12:00\nmon-fri 13:00-17:00",
        }
        async with http.post(f"{base}/calendars", data=calendar, headers=headers) as r:
            assert r.status == 200 and r.headers["HX-Refresh"] == "true"
        bad = {**calendar, "blocks": "weekdays 9-5"}
        async with http.post(f"{base}/calendars", data=bad, headers=headers) as r:
            assert r.status == 422 and (await r.json())["details"]["field"] == "blocks"
        policy = {"name": "Standard", "first_response_minutes": "60", "resolution_minutes": "480", "pause_pending": "1"}
        async with http.post(f"{base}/policies", data=policy, headers=headers) as r:
            assert r.status == 200
        async with http.post(
            f"{base}/policies", data={"name": "Bad", "resolution_minutes": "soon"}, headers=headers
        ) as r:
            assert r.status == 422 and (await r.json())["details"]["field"] == "resolution_minutes"
        async with center.runtime.sessions() as db:
            clocks = await active_clocks(session=db, ticket_id=ticket.id)
            [cal] = list(await db.scalars(select(SlaCalendar)))
            [pol] = list(await db.scalars(select(SlaPolicy)))
        # the open ticket got its clocks at once, counted on the support team's calendar
        assert sorted(c.kind for c in clocks) == ["first_response", "resolution"]
        assert {c.calendar_id for c in clocks} == {cal.id} and len(cal.blocks) == 10
        assert pol.paused_statuses == ["pending"]
        upload = aiohttp.FormData()
        upload.add_field("file", b"not a calendar", filename="bad.ics", content_type="text/calendar")
        async with http.post(f"{base}/calendars/{cal.id}/holidays", data=upload, headers=headers) as r:
            assert r.status == 422 and "BEGIN:VCALENDAR" in (await r.json())["message"]
        upload = aiohttp.FormData()
        upload.add_field("file", ICS, filename="holidays.ics", content_type="text/calendar")
        async with http.post(f"{base}/calendars/{cal.id}/holidays", data=upload, headers=headers) as r:
            assert r.status == 200
        status, page = await get(http, base)
        assert status == 200 and "2026-12-25, 2026-12-26" in page and 'data-policy="Standard" data-active="1"' in page
        async with http.post(f"{base}/policies/{pol.id}", data={"is_active": "0"}, headers=headers) as r:
            assert r.status == 200
        async with center.runtime.sessions() as db:
            assert await active_clocks(session=db, ticket_id=ticket.id) == []
        _, page = await get(http, base)
        assert 'data-policy="Standard" data-active="0"' in page
    finally:
        await http.close()
    http, _token = await signed_in_as(center, "agent1001")
    try:
        async with http.get(base, allow_redirects=False) as r:
            assert r.status == 403
    finally:
        await http.close()
