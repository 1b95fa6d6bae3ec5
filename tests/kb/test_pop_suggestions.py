"""The screen pop suggests knowledge-base solutions for the caller's newest open ticket, on the pop's own raw read
path (read-only sqlite3 / asyncpg), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from crm_core import migrate
from crm_core.customers.lookup import CallerIdLookup
from crm_core.db import make_engine, make_sessionmaker, unit_of_work
from crm_core.kb.service import create_solution
from crm_core.tickets.models import Ticket
from crm_core.tickets.service import create_ticket, update_ticket
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM
from tests.core.helpers import make_actor, make_customer
from tests.desktop.app_client import database_of_its_own

DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("kind", DATABASES)
async def test_the_pop_suggests_solutions_for_the_newest_open_ticket(kind: str, tmp_path: Path) -> None:
    async with database_of_its_own(kind, tmp_path) as url:
        engine = make_engine(url)
        lookup: CallerIdLookup | None = None
        try:
            await migrate.upgrade(engine)
            async with unit_of_work(make_sessionmaker(engine)) as db:
                boss = await make_actor(db, Role.SUPERVISOR, "boss")
                router = await create_solution(
                    session=db,
                    actor=boss,
                    title="Restart the router",
                    body="Unplug it for 30 seconds.",
                    tags="internet",
                    status="published",
                )
                await create_solution(session=db, actor=boss, title="Router firmware", body="Draft", tags="router")
                bill = await create_solution(
                    session=db, actor=boss, title="Read your bill", body="Lines explained.", status="published"
                )
                alice = await make_customer(db, "Alice Example", "+15551230001")
                bob = await make_customer(db, "Bob Example", "+15551230002")
                await create_ticket(session=db, actor=SYSTEM, subject="Question on my bill", customer_id=alice.id)
                await create_ticket(session=db, actor=SYSTEM, subject="Router is down", customer_id=alice.id)
                await create_ticket(session=db, actor=SYSTEM, subject="Hello", customer_id=bob.id)
            lookup = CallerIdLookup(engine, "US")
            card = await lookup.customer_card(alice.id)
            assert card is not None
            # the newest open ticket's subject: the published router solution only (the draft never shown)
            assert card["suggested_solutions"] == [{"id": router.id, "title": "Restart the router"}]
            bob_card = await lookup.customer_card(bob.id)
            assert bob_card is not None and bob_card["suggested_solutions"] == []  # no useful word
            async with unit_of_work(make_sessionmaker(engine)) as db:
                router_ticket = await db.scalar(select(Ticket).where(Ticket.subject == "Router is down"))
                assert router_ticket is not None
                await update_ticket(session=db, actor=SYSTEM, ticket_id=router_ticket.id, status="resolved")
            card = await lookup.customer_card(alice.id)
            assert card is not None and card["suggested_solutions"] == [{"id": bill.id, "title": "Read your bill"}]
        finally:
            if lookup is not None:
                await lookup.close()
            await engine.dispose()
