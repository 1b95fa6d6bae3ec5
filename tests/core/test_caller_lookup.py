"""CallerIdLookup: the hot-path caller identification agrees with the in-transaction service on both databases."""

from __future__ import annotations

import random

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_core.customers.lookup import CallerIdLookup, find_customer_id_by_phone
from crm_core.customers.models import Customer
from crm_core.customers.service import merge_customers
from crm_core.db import make_sessionmaker, unit_of_work
from crm_core.tickets.models import Ticket
from crm_core.tickets.service import create_ticket
from crm_core.users.service import SYSTEM
from tests.core.helpers import make_customer


async def test_hot_path_lookup_sees_committed_customers_and_skips_merged_ones(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    # numbers of this run only: the PostgreSQL database is shared by the whole test session
    line = random.randrange(1000, 9999)
    first, second = f"+1415555{line:04d}", f"+1628555{line:04d}"
    async with unit_of_work(sessions) as session:
        alice = await make_customer(session, f"Alice Lookup {line}", first)
        older = await make_customer(session, f"Alice L. {line}", second)
    async with unit_of_work(sessions) as session:
        ticket = await create_ticket(session=session, actor=SYSTEM, subject="Router", customer_id=older.id)
    lookup = CallerIdLookup(engine, region="US")
    try:
        profile = await lookup.caller_profile(second)
        assert profile is not None and profile.customer_id == older.id
        assert (profile.open_ticket_number, profile.open_ticket_status) == (ticket.number, "open")
        assert await lookup.ticket_status(ticket.number) == "open" and await lookup.ticket_status(99999999) is None
        card = await lookup.customer_card(older.id)
        assert card is not None and card["name"] == f"Alice L. {line}" and card["phones"] == [second]
        assert [t["number"] for t in card["open_tickets"]] == [ticket.number]
        assert card["last_calls"] == [] and card["notes"] == [] and card["tags"] == []
        assert await lookup.customer_card("no-such-customer") is None
        assert await lookup.customer_id(first) == alice.id
        # the PBX sends national format; the lookup normalises it with the default region
        assert await lookup.customer_id(f"(628) 555-{line:04d}") == older.id
        assert await lookup.customer_id("+19995550000") is None
        assert await lookup.customer_id("anonymous") is None
        async with unit_of_work(sessions) as session:
            await merge_customers(session=session, actor=SYSTEM, keep_id=alice.id, merge_id=older.id)
        # the merged record is gone from caller ID; its number now belongs to the kept customer
        assert await lookup.customer_id(second) == alice.id
        async with sessions() as session:
            assert await find_customer_id_by_phone(session=session, number=second, region="US") == alice.id
    finally:
        await lookup.close()
        async with unit_of_work(sessions) as session:
            await session.execute(delete(Ticket).where(Ticket.id == ticket.id))
            await session.execute(delete(Customer).where(Customer.id.in_([alice.id, older.id])))
