"""Every page rendered over a database with real figures in it (calls answered and abandoned across queues, agents,
hours and dispositions; customers with phones, notes and tickets), as a supervisor and as an agent, on SQLite and
PostgreSQL: each page answers 200 and shows the numbers the data implies."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from agent_desktop.runtime import Runtime
from crm_core.calls.models import CallLeg, CallLog, Disposition
from crm_core.calls.service import record_survey
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import add_note, create_customer
from crm_core.tickets.service import create_ticket, update_ticket
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, Actor
from tests.desktop.app_client import AppUnderTest, database_of_its_own, serve_app

DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
FORMULA_QUEUE = '=HYPERLINK("http://evil.test","x")'


@dataclass
class Facts:
    yesterday: date
    alice: str
    bob: str
    tickets: dict[str, int]  # subject -> number


# (queue, agent, outcome, wait, talk, disposition, customer, hour, minute) of yesterday's calls
CALLS = [
    ("support", "1001", "answered", 10.0, 120.0, "resolved", "alice", 9, 5),
    ("support", "1001", "answered", 30.0, 60.0, "sale", "alice", 9, 20),
    ("support", None, "abandoned", 45.0, 0.0, None, None, 9, 40),
    ("sales", "2001", "answered", 5.0, 300.0, "sale", "bob", 14, 10),
    ("sales", None, "abandoned", 12.0, 0.0, None, None, 14, 30),
    (FORMULA_QUEUE, "2001", "answered", 8.0, 42.0, None, None, 14, 50),
]


async def fill(runtime: Runtime) -> Facts:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    agent = Actor(user_id=None, role=Role.AGENT, extension="1001")
    async with runtime.unit_of_work() as session:
        for code, label in (("resolved", "Resolved"), ("sale", "Sale"), ("callback", "Call back")):
            await session.merge(Disposition(code=code, label=label))
        alice = await create_customer(
            session=session,
            actor=SYSTEM,
            region="US",
            data=CustomerIn(
                name="Alice Example",
                phones=[PhoneIn(number="+15551230001"), PhoneIn(number="+15551230009", label="work")],
                emails=["alice@example.test"],
                tags=["gold-plan"],
                city="Springfield",
                language="en",
                timezone="America/New_York",
                vip_tier="gold",
            ),
        )
        bob = await create_customer(
            session=session,
            actor=SYSTEM,
            region="US",
            data=CustomerIn(name="Bob Example", phones=[PhoneIn(number="+15551230002")]),
        )
        await add_note(session=session, actor=agent, customer_id=alice.id, body="Prefers email after 6pm")
        tickets = {}
        for subject in ("Router keeps rebooting", "Invoice 2291 twice", "Fibre outage in May"):
            ticket = await create_ticket(session=session, actor=SYSTEM, subject=subject, customer_id=alice.id)
            tickets[subject] = ticket.number
        await update_ticket(
            session=session,
            actor=SYSTEM,
            ticket_id=ticket.id,
            status="resolved",  # the last one: not open
        )
        customers = {"alice": alice.id, "bob": bob.id}
        for index, (queue, extension, outcome, wait, talk, disposition, who, hour, minute) in enumerate(CALLS):
            offered = datetime.combine(yesterday, time(hour, minute), UTC)
            answered = offered + timedelta(seconds=wait) if outcome == "answered" else None
            ended = (answered or offered) + timedelta(seconds=talk or wait)
            call = CallLog(
                linkedid=f"1700000000.{index}",
                direction="inbound",
                caller_number="+15551230001" if who == "alice" else "+15557770000",
                customer_id=customers.get(who or ""),
                queue=queue,
                agent=extension,
                offered_at=offered,
                answered_at=answered,
                ended_at=ended,
                wait_seconds=wait,
                talk_seconds=talk,
                outcome=outcome,
                disposition_code=disposition,
            )
            if extension:
                call.legs = [
                    CallLeg(
                        agent=extension,
                        channel=f"PJSIP/{extension}-{index:08x}",
                        queue=queue,
                        rang_at=offered,
                        answered_at=answered,
                        ended_at=ended,
                    )
                ]
            session.add(call)
        # a call of today (for the wallboard's intervals), and a Twilio survey that is no call to a queue
        midnight = datetime.combine(datetime.now(UTC).date(), time(), UTC)
        session.add(
            CallLog(
                linkedid="1700000000.99",
                direction="inbound",
                queue="support",
                offered_at=midnight + (datetime.now(UTC) - midnight) / 2,
                ended_at=datetime.now(UTC),
                outcome="abandoned",
                wait_seconds=3.0,
            )
        )
        await record_survey(
            session=session,
            linkedid="CA-survey",
            score=5,
            outside_pbx=True,
            at=datetime.combine(yesterday, time(9), UTC),
        )
    return Facts(yesterday, alice.id, bob.id, tickets)


def table_row(html: str, key: str) -> tuple[int, int, int, str]:
    """(offered, answered, abandoned, service level) of the report table row `key`."""
    escaped = re.escape(key.replace('"', "&#34;"))
    found = re.search(rf"<tr><td>{escaped}</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td>\s*<td>([^<]*)</td>", html)
    assert found is not None, f"no report row {key!r}"
    return int(found.group(1)), int(found.group(2)), int(found.group(3)), found.group(4)


async def page(client: object, path: str, status: int = 200) -> str:
    response = await client.get(path)  # type: ignore[attr-defined]
    body = await response.get_data(as_text=True)
    assert response.status_code == status, f"{path}: {response.status_code} {body[:300]}"
    return str(body)


async def check_reports(center: AppUnderTest, facts: Facts, client: object) -> None:
    day = facts.yesterday.isoformat()
    html = await page(client, f"/reports?start={day}&end={day}")
    assert re.search(r"6 calls, 4 answered, 2 abandoned,\s+service level 50.0 %", html), html
    assert table_row(html, "support") == (3, 2, 1, "33.3")
    assert table_row(html, "sales") == (2, 1, 1, "50.0")
    assert table_row(html, FORMULA_QUEUE) == (1, 1, 0, "100.0")
    assert table_row(html, "1001") == (2, 2, 0, "50.0")
    assert table_row(html, "2001") == (2, 2, 0, "100.0")
    assert table_row(html, "(nobody)") == (2, 0, 2, "0.0")
    assert table_row(html, "09:00") == (3, 2, 1, "33.3")
    assert table_row(html, "14:00") == (3, 2, 1, "66.7")
    assert table_row(html, "sale") == (2, 2, 0, "50.0")
    assert table_row(html, "resolved") == (1, 1, 0, "100.0")
    assert table_row(html, "(none)") == (3, 1, 2, "33.3")
    # the bars are scaled to the busiest row: support's 3 calls fill the 300 units, its 2 answered 200
    assert 'width="200.0" height="16" class="answered"' in html
    # the default range (the last 7 days) also holds today's call
    assert re.search(r"7 calls, 4 answered, 3 abandoned", await page(client, "/reports"))
    text = await page(client, f"/reports.csv?start={day}&end={day}")
    rows = {(r["dimension"], r["key"]): r for r in csv.DictReader(io.StringIO(text))}
    assert rows[("total", "all")]["offered"] == "6" and rows[("total", "all")]["service_level_pct"] == "50.0"
    assert rows[("agent", "1001")]["average_talk_s"] == "90.0"
    # a queue named like a formula stays text in a spreadsheet
    assert rows[("queue", "'" + FORMULA_QUEUE)]["answered"] == "1"
    assert ("queue", FORMULA_QUEUE) not in rows


async def check_customer_page(client: object, facts: Facts) -> None:
    html = await page(client, f"/customers/{facts.alice}")
    for shown in ("Alice Example", "VIP gold", "+15551230001", "+15551230009", "alice@example.test", "gold-plan"):
        assert shown in html, shown
    assert "Prefers email after 6pm" in html  # the note
    numbers = facts.tickets
    assert f"#{numbers['Router keeps rebooting']} Router keeps rebooting" in html
    assert f"#{numbers['Invoice 2291 twice']} Invoice 2291 twice" in html
    open_section = html.split("<h2>Open tickets</h2>")[1].split("</section>")[0]
    assert f"#{numbers['Fibre outage in May']}" not in open_section  # resolved: only on the timeline
    assert f"#{numbers['Fibre outage in May']} Fibre outage in May (resolved)" in html
    assert 'inbound · answered · agent 1001 · <span class="badge disposition">Resolved</span>' in html
    assert 'inbound · answered · agent 1001 · <span class="badge disposition">Sale</span>' in html


@pytest.mark.parametrize("kind", DATABASES)
async def test_every_page_shows_its_figures_to_a_supervisor(kind: str, tmp_path: Path) -> None:
    async with database_of_its_own(kind, tmp_path) as url, serve_app(url, tmp_path, users=("boss",)) as center:
        facts = await fill(center.runtime)
        client, _ = await center.client("boss")
        await check_reports(center, facts, client)
        await check_customer_page(client, facts)
        wallboard = await page(client, "/wallboard")
        assert 'data-sl="20"' in wallboard and "Calls today (per 30 minutes)" in wallboard
        intervals = (await (await client.get("/api/wallboard/intervals")).get_json())["intervals"]
        assert sum(i["offered"] for i in intervals) == 1 and sum(i["abandoned"] for i in intervals) == 1
        desktop = await page(client, "/desktop")
        assert 'data-extension="9001"' in desktop
        assert all(f">{label}<" in desktop for label in ("Resolved", "Sale", "Call back"))
        account = await page(client, "/account")
        assert "<h1>Boss</h1>" in account and "Role: supervisor · extension 9001" in account
        assert 'name="again"' in await page(client, "/password")
        assert 'name="username"' in await page(client, "/login")


@pytest.mark.parametrize("kind", DATABASES)
async def test_every_page_an_agent_may_open_shows_its_figures(kind: str, tmp_path: Path) -> None:
    async with database_of_its_own(kind, tmp_path) as url, serve_app(url, tmp_path, users=("agent1001",)) as center:
        facts = await fill(center.runtime)
        client, _ = await center.client("agent1001")
        await check_customer_page(client, facts)
        bob = await page(client, f"/customers/{facts.bob}")
        assert (
            "Bob Example" in bob
            and "+15551230002" in bob
            and 'agent 2001 · <span class="badge disposition">Sale</span>' in bob
        )
        desktop = await page(client, "/desktop")
        assert 'data-extension="1001"' in desktop and 'data-queues="support"' in desktop
        assert all(f">{label}<" in desktop for label in ("Resolved", "Sale", "Call back"))
        account = await page(client, "/account")
        assert "Role: agent · extension 1001" in account and "Queues: support" in account
        assert 'name="again"' in await page(client, "/password")
        for supervision in ("/wallboard", "/reports", f"/reports.csv?start={facts.yesterday}&end={facts.yesterday}"):
            refused = await page(client, supervision, status=403)
            assert "calls, " not in refused and "support" not in refused
