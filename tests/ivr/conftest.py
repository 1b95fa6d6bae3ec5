"""An IVR under test: the FastAGI server on a free port with the sample flow and a SQLite CRM."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core import migrate
from crm_core.customers.lookup import CallerIdLookup
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.db import make_engine, make_sessionmaker, unit_of_work
from crm_core.tickets.service import create_ticket, update_ticket
from crm_core.users.service import SYSTEM
from ivr.engine import CrmContext
from ivr.fastagi import FastAgiServer
from ivr.flow import Flow, load_flow
from tests.sqlite_template import migrated_sqlite

SAMPLE = Path(__file__).resolve().parents[2] / "ivr" / "flows" / "sample.yaml"
OPEN_HOURS = datetime.fromisoformat("2026-11-24T15:00:00+00:00")  # a Tuesday, 10:00 in New York


@dataclass
class Ivr:
    server: FastAgiServer
    port: int
    sessions: async_sessionmaker[AsyncSession]
    flow: Flow
    ids: dict[str, Any]
    engine: Any = None

    async def close(self) -> None:
        await self.server.stop()
        await self.server.crm.lookup.close()
        await self.engine.dispose()


async def make_ivr(tmp_path: Path, flow: Flow | None = None, speech: Any = None, now: datetime = OPEN_HOURS) -> Ivr:
    engine = make_engine(migrated_sqlite(tmp_path / "ivr.db"))
    await migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    ids: dict[str, Any] = {}
    async with unit_of_work(sessions) as session:
        alice = await create_customer(
            session=session,
            actor=SYSTEM,
            region="US",
            data=CustomerIn(name="Alice Example", phones=[PhoneIn(number="+15551230001")], vip_tier="gold"),
        )
        bob = await create_customer(
            session=session,
            actor=SYSTEM,
            region="US",
            data=CustomerIn(name="Bob Example", phones=[PhoneIn(number="+15551230002")]),
        )
        carol = await create_customer(
            session=session,
            actor=SYSTEM,
            region="US",
            data=CustomerIn(name="Carol Example", phones=[PhoneIn(number="+15551230003")]),
        )
        ticket = await create_ticket(session=session, actor=SYSTEM, subject="Router", customer_id=bob.id)
        other = await create_ticket(session=session, actor=SYSTEM, subject="Bill", customer_id=carol.id)
        await update_ticket(session=session, actor=SYSTEM, ticket_id=other.id, status="resolved")
        ids.update(alice=alice.id, bob=bob.id, carol=carol.id, ticket=ticket.number, resolved=other.number)
    crm = CrmContext(
        sessions=sessions, lookup=CallerIdLookup(engine, "US"), region="US", speech=speech, clock=lambda: now
    )
    flow = flow or load_flow(SAMPLE)
    server = FastAgiServer({flow.name: flow}, crm, default_flow=flow.name, recordings=tmp_path / "recordings")
    port = await server.start("127.0.0.1", 0)
    return Ivr(server, port, sessions, flow, ids, engine)


@pytest.fixture
async def ivr(tmp_path: Path) -> AsyncIterator[Ivr]:
    live = await make_ivr(tmp_path)  # the sample flow opens 8:00-20:00 New York time: OPEN_HOURS is open
    try:
        yield live
    finally:
        await live.close()
