"""Caller-ID lookup: one index probe on customer_phones.e164, in a transaction or on the hot path of a ringing call."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from crm_core.customers.models import Customer, CustomerPhone
from crm_core.customers.phones import caller_id_to_e164
from crm_core.kb.search import POP_SUGGESTIONS_SQL, pop_match

# the same probe as find_customer_id_by_phone, for the fast paths of CallerIdLookup
_PROBE_SQL = (
    "SELECT p.customer_id FROM customer_phones AS p JOIN customers AS c ON c.id = p.customer_id "
    "WHERE p.e164 = {} AND c.merged_into_id IS NULL ORDER BY p.is_primary DESC LIMIT 1"
)
_SQLITE_PROBE = _PROBE_SQL.format("?")
_POSTGRES_PROBE = _PROBE_SQL.format("$1")
# the IVR's questions about a caller: VIP tier and the newest open ticket, in one probe
_PROFILE_SQL = (
    "SELECT c.id, c.vip_tier, t.number, t.status FROM customers AS c LEFT JOIN tickets AS t ON t.id = ("
    "SELECT t2.id FROM tickets AS t2 WHERE t2.customer_id = c.id "
    "AND t2.status IN ('new', 'open', 'pending', 'on_hold') ORDER BY t2.created_at DESC LIMIT 1) WHERE c.id = {}"
)
_TICKET_SQL = "SELECT number, status FROM tickets WHERE number = {}"
# the screen pop's card of a customer: small queries on indexed columns, no ORM (it is built for every call)
_CARD_SQL = {
    "customer": "SELECT id, name, kind, vip_tier, language FROM customers WHERE id = {}",
    "tags": "SELECT t.name FROM tags AS t JOIN customer_tags AS ct ON ct.tag_id = t.id WHERE ct.customer_id = {} "
    "ORDER BY t.name",
    "phones": "SELECT e164 FROM customer_phones WHERE customer_id = {} ORDER BY is_primary DESC, e164",
    "emails": "SELECT email FROM customer_emails WHERE customer_id = {} ORDER BY email",
    "tickets": "SELECT id, number, subject, status, priority FROM tickets WHERE customer_id = {} "
    "AND status IN ('new', 'open', 'pending', 'on_hold') ORDER BY created_at DESC LIMIT 10",
    "calls": "SELECT linkedid, offered_at, direction, outcome, agent, disposition_code FROM call_logs "
    "WHERE customer_id = {} ORDER BY offered_at DESC LIMIT 5",
    "sms": "SELECT created_at, direction, body FROM sms_messages WHERE customer_id = {} "
    "ORDER BY created_at DESC LIMIT 3",
    "notes": "SELECT created_at, body FROM notes WHERE customer_id = {} ORDER BY created_at DESC LIMIT 3",
}


def _iso(value: object) -> str | None:
    """A timestamp as ISO 8601 UTC, whether the driver gave a datetime or SQLite's text."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value))
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()


def _as_e164(number: str, region: str) -> str | None:
    return number if number.startswith("+") and number[1:].isdigit() else caller_id_to_e164(number, region)


async def find_customer_id_by_phone(*, session: AsyncSession, number: str, region: str) -> str | None:
    """The id of the customer with this number (E.164 or as the PBX wrote it), or None. Merged ones excluded.

    On the session's own connection (it sees the transaction's writes), with a statement built once: the call-log
    writer asks this for every call, beside the screen pops."""
    e164 = _as_e164(number, region)
    if e164 is None:
        return None
    connection = await session.connection()
    found: str | None = (await connection.execute(_PROBE, {"e164": e164})).scalar()
    return found


_PROBE: Select[Any] = (
    select(CustomerPhone.customer_id)
    .join(Customer, Customer.id == CustomerPhone.customer_id)
    .where(CustomerPhone.e164 == bindparam("e164"), Customer.merged_into_id.is_(None))
    .order_by(CustomerPhone.is_primary.desc())
    .limit(1)
)


@dataclass(frozen=True, slots=True)
class CallerProfile:
    customer_id: str
    vip_tier: str | None
    open_ticket_number: int | None
    open_ticket_status: str | None


class CallerIdLookup:
    """Who is calling, for the IVR and the screen pop, outside any transaction.

    On PostgreSQL it is the same probe as a prepared statement on a small asyncpg pool of its own: no ORM, no
    BEGIN/ROLLBACK and no pre-ping round trip per lookup. On the embedded SQLite file it is the probe on a
    read-only sqlite3 connection run directly on the event loop: the index probe takes tens of microseconds,
    while handing it to aiosqlite's thread costs most of a millisecond (bench/caller_lookup.py). WAL mode means
    this reader never waits for a writer and sees every committed customer.
    """

    def __init__(self, engine: AsyncEngine, region: str) -> None:
        self._region = region
        self._sqlite: sqlite3.Connection | None = None
        self._pool: Any = None  # asyncpg.Pool, made on first use (it needs the running loop)
        self._dsn: str | None = None
        url = engine.url
        if url.get_backend_name() == "sqlite":
            if not url.database or url.database == ":memory:":
                raise ValueError("caller-ID lookup needs a SQLite file database")
            path = Path(url.database).resolve()
            self._sqlite = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
            self._sqlite.execute("PRAGMA query_only=ON")
        elif url.get_backend_name() == "postgresql":
            self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        else:
            raise ValueError(f"caller-ID lookup does not know the {url.get_backend_name()} database")

    async def customer_id(self, number: str) -> str | None:
        e164 = _as_e164(number, self._region)
        if e164 is None:
            return None
        if self._sqlite is not None:
            row = self._sqlite.execute(_SQLITE_PROBE, (e164,)).fetchone()
            return None if row is None else str(row[0])
        if self._pool is None:
            if self._dsn is None:
                raise RuntimeError("CallerIdLookup is closed")
            self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=8)
        found = await self._pool.fetchval(_POSTGRES_PROBE, e164)
        return None if found is None else str(found)

    async def _row(self, sql: str, value: object) -> tuple[object, ...] | None:
        if self._sqlite is not None:
            row = self._sqlite.execute(sql.format("?"), (value,)).fetchone()
            return tuple(row) if row is not None else None
        if self._pool is None:
            if self._dsn is None:
                raise RuntimeError("CallerIdLookup is closed")
            self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=8)
        record = await self._pool.fetchrow(sql.format("$1"), value)
        return tuple(record) if record is not None else None

    async def caller_profile(self, number: str) -> CallerProfile | None:
        """Who calls, their VIP tier and newest open ticket: what an IVR routes on, in two index probes."""
        customer_id = await self.customer_id(number)
        if customer_id is None:
            return None
        row = await self._row(_PROFILE_SQL, customer_id)
        if row is None:
            return CallerProfile(customer_id, None, None, None)
        return CallerProfile(
            customer_id,
            str(row[1]) if row[1] else None,
            int(str(row[2])) if row[2] is not None else None,
            str(row[3]) if row[3] is not None else None,
        )

    async def _rows(self, sql: str, value: object) -> list[tuple[object, ...]]:
        if self._sqlite is not None:
            return [tuple(r) for r in self._sqlite.execute(sql.format("?"), (value,)).fetchall()]
        if self._pool is None:
            if self._dsn is None:
                raise RuntimeError("CallerIdLookup is closed")
            self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=8)
        return [tuple(r) for r in await self._pool.fetch(sql.format("$1"), value)]

    async def customer_card(self, customer_id: str) -> dict[str, Any] | None:
        """What the screen pop shows of a customer: profile, open tickets, last calls, last SMS, notes."""
        rows = {name: await self._rows(sql, customer_id) for name, sql in _CARD_SQL.items()}
        if not rows["customer"]:
            return None
        cid, name, kind, vip_tier, language = rows["customer"][0]
        solutions = await self._suggestions(str(rows["tickets"][0][2])) if rows["tickets"] else []
        return {
            "id": cid,
            "name": name,
            "kind": kind,
            "vip_tier": vip_tier,
            "language": language,
            "tags": [str(r[0]) for r in rows["tags"]],
            "phones": [str(r[0]) for r in rows["phones"]],
            "emails": [str(r[0]) for r in rows["emails"]],
            "open_tickets": [
                {"id": r[0], "number": r[1], "subject": r[2], "status": r[3], "priority": r[4]} for r in rows["tickets"]
            ],
            "last_calls": [
                {
                    "linkedid": r[0],
                    "at": _iso(r[1]),
                    "direction": r[2],
                    "outcome": r[3] or "in progress",
                    "agent": r[4],
                    "disposition": r[5],
                }
                for r in rows["calls"]
            ],
            "last_sms": [{"at": _iso(r[0]), "direction": r[1], "body": r[2]} for r in rows["sms"]],
            "notes": [{"at": _iso(r[0]), "body": r[1]} for r in rows["notes"]],
            # knowledge-base solutions for the newest open ticket's subject
            "suggested_solutions": [{"id": r[0], "title": r[1]} for r in solutions],
        }

    async def _suggestions(self, subject: str) -> list[tuple[object, ...]]:
        dialect = "sqlite" if self._sqlite is not None else "postgresql"
        match = pop_match(subject, dialect)
        return await self._rows(POP_SUGGESTIONS_SQL[dialect], match) if match else []

    async def ticket_status(self, number: int) -> str | None:
        """The status of ticket `number`, or None when there is no such ticket."""
        row = await self._row(_TICKET_SQL, number)
        return str(row[1]) if row is not None else None

    async def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        self._dsn = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
