"""The knowledge base and satisfaction over HTTP against the served app (SQLite and PostgreSQL): the editor, what
agents may read, escaped output, bad input refused with nothing written, the ticket page's panels — suggest, link,
send (a reply and an SMS in the outbox) — and the CSAT panel."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm_core.audit.models import AuditEntry
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.kb.models import KbSolution, KbTicketSolution
from crm_core.sms.models import SmsMessage
from crm_core.tickets.models import TicketMessage
from crm_core.tickets.service import create_ticket, update_ticket
from crm_core.users.models import User
from crm_core.users.service import SYSTEM, Actor
from tests.desktop.app_client import AppUnderTest, database_of_its_own, serve_app

DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
HX = {"HX-Request": "true"}
SENDER = "+15550000100"
XSS = '<script>alert("kb")</script>'


async def _actor(center: AppUnderTest, username: str) -> Actor:
    async with center.runtime.sessions() as db:
        user = await db.scalar(select(User).where(User.username == username))
        assert user is not None
        return Actor.of(user)


async def _count(center: AppUnderTest, model: type) -> int:
    async with center.runtime.sessions() as db:
        return int(await db.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize("kind", DATABASES)
async def test_editor_and_readers(kind: str, tmp_path: Path) -> None:
    async with (
        database_of_its_own(kind, tmp_path) as url,
        serve_app(url, tmp_path, users=("boss", "agent1001")) as center,
    ):
        boss, boss_token = await center.client("boss")
        agent, agent_token = await center.client("agent1001")
        new = await boss.get("/kb/new")
        assert new.status_code == 200 and 'id="kb-editor"' in await new.get_data(as_text=True)
        assert (await agent.get("/kb/new")).status_code == 403
        form = {
            "title": "Printer prints blank pages",
            "body": f"Replace the toner.\n{XSS}",
            "tags": "Printer, Hardware",
        }
        made = await boss.post("/kb", form=form, headers={**HX, "X-CSRF-Token": boss_token})
        assert made.status_code == 200
        solution_id = made.headers["HX-Redirect"].rsplit("/", 1)[-1]
        async with center.runtime.sessions() as db:
            solution = await db.get(KbSolution, solution_id)
            assert solution is not None and (solution.status, solution.tags) == ("draft", "printer, hardware")
        # a draft is the editors': an agent neither finds nor opens it
        assert "Printer prints blank pages" not in await (await agent.get("/kb?q=printer")).get_data(as_text=True)
        assert (await agent.get(f"/kb/{solution_id}")).status_code == 404
        published = {**form, "status": "published"}
        saved = await boss.post(f"/kb/{solution_id}", form=published, headers={**HX, "X-CSRF-Token": boss_token})
        assert saved.status_code == 200
        listing = await (await agent.get("/kb?q=printers")).get_data(as_text=True)
        assert "Printer prints blank pages" in listing
        page = await (await agent.get(f"/kb/{solution_id}")).get_data(as_text=True)
        assert XSS not in page and "&lt;script&gt;alert(" in page  # the body is shown escaped
        assert "Boss" in page  # who wrote and edited it
        assert 'href="/kb/' + solution_id + '/edit"' not in page  # no edit button for an agent
        # agents never write
        refused = await agent.post(f"/kb/{solution_id}", form=published, headers={"X-CSRF-Token": agent_token})
        assert refused.status_code == 403
        # bad input: a clear error and nothing written
        before = await _count(center, KbSolution)
        for bad in (
            {"title": "", "body": "x"},
            {"title": "t", "body": "x" * 19_001},
            {"title": "t", "body": "b", "status": "x"},
        ):
            response = await boss.post("/kb", form=bad, headers={**HX, "X-CSRF-Token": boss_token})
            assert response.status_code == 422, bad
            assert "message" in await response.get_json()
        bell = await boss.post("/kb", form={"title": "a\x07b", "body": "b"}, headers={**HX, "X-CSRF-Token": boss_token})
        assert bell.status_code == 400
        assert await _count(center, KbSolution) == before
        assert (await boss.post("/kb", form=form, headers=HX)).status_code == 400  # no CSRF token
        async with center.runtime.sessions() as db:
            audited = await db.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.entity_type == "kb_solution")
            )
        assert audited == 2


@pytest.mark.parametrize("kind", DATABASES)
async def test_ticket_panels_suggest_link_send_and_csat(kind: str, tmp_path: Path) -> None:
    async with (
        database_of_its_own(kind, tmp_path) as url,
        serve_app(url, tmp_path, users=("boss", "agent1001", "agent2001"), sms_sender=SENDER) as center,
    ):
        agent = await _actor(center, "agent1001")
        async with center.runtime.unit_of_work() as db:
            from crm_core.kb.service import create_solution

            boss = await _actor(center, "boss")
            router = await create_solution(
                session=db,
                actor=boss,
                title="Restart the router",
                body="Unplug it for 30 seconds.",
                tags="internet",
                status="published",
            )
            alice = await create_customer(
                session=db,
                actor=SYSTEM,
                region="US",
                data=CustomerIn(name="Alice Example", phones=[PhoneIn(number="+15551230001")]),
            )
            ticket = await create_ticket(
                session=db,
                actor=agent,
                subject="Internet down since noon",
                customer_id=alice.id,
                assignee_id=agent.user_id,
            )
        http, token = await center.client("agent1001")
        page = await (await http.get(f"/tickets/{ticket.id}")).get_data(as_text=True)
        assert 'id="kb-suggestions"' in page and 'id="csat"' in page  # the panels, loaded after the page
        panel = await (await http.get(f"/tickets/{ticket.id}/kb", headers=HX)).get_data(as_text=True)
        assert "Restart the router" in panel and "Suggested from the subject" in panel
        searched = await (await http.get(f"/tickets/{ticket.id}/kb?q=unplug", headers=HX)).get_data(as_text=True)
        assert "Restart the router" in searched and "Found" in searched
        other, other_token = await center.client("agent2001")
        refused = await other.post(
            f"/tickets/{ticket.id}/kb/{router.id}/link", headers={**HX, "X-CSRF-Token": other_token}
        )
        assert refused.status_code == 403 and await _count(center, KbTicketSolution) == 0
        linked = await http.post(f"/tickets/{ticket.id}/kb/{router.id}/link", headers={**HX, "X-CSRF-Token": token})
        text = await linked.get_data(as_text=True)
        assert linked.status_code == 200 and "Linked to this ticket" in text and "Send to customer" in text
        sent = await http.post(f"/tickets/{ticket.id}/kb/{router.id}/send", headers={**HX, "X-CSRF-Token": token})
        ticket_html = await sent.get_data(as_text=True)
        assert sent.status_code == 200 and 'id="ticket"' in ticket_html and "Unplug it for 30 seconds." in ticket_html
        async with center.runtime.sessions() as db:
            [sms] = list(await db.scalars(select(SmsMessage)))
            assert (sms.to_number, sms.from_number, sms.status) == ("+15551230001", SENDER, "queued")
            kinds = list(await db.scalars(select(TicketMessage.kind).where(TicketMessage.ticket_id == ticket.id)))
            assert kinds == ["reply"]
        panel = await (await http.get(f"/tickets/{ticket.id}/kb", headers=HX)).get_data(as_text=True)
        assert "SMS queued" in panel
        # CSAT: nothing before resolution, the request waiting after it
        csat = await (await http.get(f"/tickets/{ticket.id}/csat", headers=HX)).get_data(as_text=True)
        assert "Asked after the ticket is resolved." in csat
        async with center.runtime.unit_of_work() as db:
            await update_ticket(session=db, actor=agent, ticket_id=ticket.id, status="resolved")
        csat = await (await http.get(f"/tickets/{ticket.id}/csat", headers=HX)).get_data(as_text=True)
        assert re.search(r'data-csat-status="pending"', csat) and "request not sent yet" in csat
        assert (await http.get("/tickets/" + "0" * 32 + "/csat")).status_code == 404
