"""Benchmark: the SLA scheduler and the ticket list on PostgreSQL with 1,000,000 open tickets.

A database of its own is filled (by SQL, generate_series) with --tickets open tickets, each with a running
first-response and resolution clock due in the future; then:
- idle_pass_ms: one scheduler pass when nothing is due (median of 5);
- due_10000_ms: one pass handling 10,000 clocks whose warning time has come (marked, events published);
- list_p99_ms: p99 of the desk's list, first page, filtered (priority=high, newest first), over 300 requests.
Goals (issue #13): idle < 200 ms, 10,000 due < 1 s, list p99 < 50 ms. Heavy: run it once.

    .venv/bin/python bench/sla.py [--tickets 1000000] [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test]
    .venv/bin/python bench/sla.py --tickets 20000 --explain      # small mode (a smoke run), with the list's plan

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DUE = 10_000


async def explain(engine: object, query: object, label: str) -> None:
    """EXPLAIN ANALYZE of one statement as the app sends it (printed, for a profile of the plan)."""
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql

    compiled = query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})  # type: ignore[attr-defined]
    async with engine.connect() as connection:  # type: ignore[attr-defined]
        plan = await connection.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}"))
        print(f"--- {label}")
        for (line,) in plan:
            print(line)
        await connection.rollback()


async def run(tickets: int, admin_url: str, *, show_plans: bool = False, batch_size: int = 1000) -> dict[str, object]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from crm_core import migrate
    from crm_core.bus import InMemoryEventBus
    from crm_core.db import make_engine, make_sessionmaker
    from crm_core.sla.events import SlaClockWarned
    from crm_core.sla.scheduler import SlaScheduler
    from crm_core.tickets.service import TicketFilters, list_tickets
    from crm_core.users.service import SYSTEM

    name = f"bench_sla_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    engine = make_engine(url)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        await migrate.upgrade(engine)
        started = time.perf_counter()
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    """
                    INSERT INTO tickets (id, number, subject, description, status, priority, category, team,
                                         created_at, updated_at)
                    SELECT md5('t' || i), 1000 + i, 'Ticket ' || i, '',
                           (ARRAY['new', 'open', 'open', 'pending', 'on_hold'])[1 + i % 5],
                           (ARRAY['low', 'normal', 'high', 'urgent'])[1 + (i / 7) % 4],
                           NULL, (ARRAY['support', 'sales'])[1 + i % 2],
                           CAST(:now AS timestamptz) - make_interval(secs => i * 30),
                           CAST(:now AS timestamptz) - make_interval(secs => i * 30)
                    FROM generate_series(1, :n) AS i
                    """
                ),
                {"now": now, "n": tickets},
            )
            for kind, offset in (("first_response", 0), ("resolution", 1)):
                await connection.execute(
                    text(
                        """
                        INSERT INTO sla_clocks (id, ticket_id, kind, target_minutes, warning_percent, used_minutes,
                                                running_since, started_at, warn_at, due_at, next_check_at, status)
                        SELECT md5('c' || :kind || i), md5('t' || i), :kind, 600, 75, 0,
                               CAST(:now AS timestamptz), CAST(:now AS timestamptz),
                               CAST(:now AS timestamptz) + make_interval(mins => 60 + i % 5000 + :offset),
                               CAST(:now AS timestamptz) + make_interval(mins => 600 + i % 5000 + :offset),
                               CAST(:now AS timestamptz) + make_interval(mins => 60 + i % 5000 + :offset),
                               'running'
                        FROM generate_series(1, :n) AS i
                        """
                    ),
                    {"now": now, "n": tickets, "kind": kind, "offset": offset},
                )
            await connection.execute(text("ANALYZE"))
        print(f"filled {tickets} tickets and {2 * tickets} clocks in {time.perf_counter() - started:.1f} s")

        sessions = make_sessionmaker(engine)
        bus = InMemoryEventBus()
        warned: list[object] = []

        async def count(event: object) -> None:
            warned.append(event)

        bus.subscribe(SlaClockWarned, count)
        scheduler = SlaScheduler(sessions, bus, clock=lambda: now, batch_size=batch_size)
        idle = []
        for _ in range(5):
            t0 = time.perf_counter()
            assert await scheduler.run_once() == 0
            idle.append((time.perf_counter() - t0) * 1000)
        idle_ms = statistics.median(idle)
        print(f"idle pass: {', '.join(f'{v:.1f}' for v in idle)} ms")

        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE sla_clocks SET warn_at = :past, next_check_at = :past WHERE id IN "
                    "(SELECT id FROM sla_clocks WHERE kind = 'first_response' ORDER BY id LIMIT :due)"
                ),
                {"past": now - timedelta(minutes=1), "due": DUE},
            )
        t0 = time.perf_counter()
        handled = await scheduler.run_once()
        due_ms = (time.perf_counter() - t0) * 1000
        assert handled == DUE and len(warned) == DUE, (handled, len(warned))
        print(f"{handled} due clocks handled, {len(warned)} warnings published in {due_ms:.0f} ms")

        filters = TicketFilters(view="all", priority="high", sort="-created")
        if show_plans:
            from crm_core.tickets.service import _view_query

            async with sessions() as session:
                query = await _view_query(session=session, actor=SYSTEM, filters=filters, now=now)
            await explain(engine, query.limit(26), "the list's first page, priority=high, newest first")
        timings = []
        async with sessions() as session:
            for i in range(300):
                t0 = time.perf_counter()
                page = await list_tickets(session=session, actor=SYSTEM, filters=filters, now=now)
                timings.append((time.perf_counter() - t0) * 1000)
                assert len(page.rows) == 25 and page.has_more
                if i % 50 == 0:
                    session.expunge_all()
        timings.sort()
        list_p99 = timings[int(len(timings) * 0.99) - 1]
        print(f"list first page: p50 {statistics.median(timings):.1f} ms, p99 {list_p99:.1f} ms")
        return {
            "tickets": tickets,
            "clocks": 2 * tickets,
            "idle_pass_ms": round(idle_ms, 1),
            "due_10000_ms": round(due_ms, 1),
            "list_p99_ms": round(list_p99, 1),
            "list_p50_ms": round(statistics.median(timings), 1),
            "goals": {"idle_pass_ms": 200, "due_10000_ms": 1000, "list_p99_ms": 50},
        }
    finally:
        await engine.dispose()
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--batch-size", type=int, default=10_000, help="the scheduler's batch (its default)")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the list's query")
    args = parser.parse_args()
    result = asyncio.run(run(args.tickets, args.postgres, show_plans=args.explain, batch_size=args.batch_size))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
