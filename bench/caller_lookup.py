"""Benchmark: caller-ID lookup against 1,000,000 customers on SQLite and PostgreSQL, and a 100,000-row CSV import.

Goal (issue #2): lookup p99 < 1 ms on both databases. Two lookups of the product are measured:
`CallerIdLookup.customer_id` (what the IVR and the screen pop use; the keys sqlite_p50_ms … postgres_p99_ms) and
`find_customer_id_by_phone` inside an async SQLAlchemy session (what services use in a transaction; keys
*_session_*). The import is the real `crm import customers` command with its progress bar.

    .venv/bin/python bench/caller_lookup.py [--customers 1000000] [--lookups 20000] [--import-rows 100000]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crm_core import migrate  # noqa: E402
from crm_core.customers.lookup import CallerIdLookup, find_customer_id_by_phone  # noqa: E402
from crm_core.db import make_engine, make_sessionmaker  # noqa: E402

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
PG_DB = "crm_bench_lookup"


def phone_of(i: int) -> str:
    # unique for i < 7,000,000; spread over 700 area codes so the index is not one long run of equal prefixes
    return f"+1{201 + i % 700:03d}{555 + i // 7_000_000:03d}{i // 700 % 10000:04d}"


def customer_rows(count: int) -> Iterator[tuple[tuple[object, ...], tuple[object, ...]]]:
    now = datetime.now(UTC).replace(tzinfo=None)
    for i in range(count):
        cid = f"b{i:031d}"
        yield (
            (cid, "person", f"Customer {i}", "{}", False, now, now),
            (f"p{i:031d}", cid, phone_of(i), "mobile", True),
        )


CUSTOMER_COLS = "id, kind, name, custom_fields, sms_opt_out, created_at, updated_at"
PHONE_COLS = "id, customer_id, e164, label, is_primary"


def fill_sqlite(path: Path, count: int) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    have = db.execute("SELECT count(*) FROM customers").fetchone()[0]
    if have >= count:
        db.close()
        return
    db.execute("DELETE FROM customer_phones")
    db.execute("DELETE FROM customers")
    batch: list[tuple[tuple[object, ...], tuple[object, ...]]] = []
    for pair in customer_rows(count):
        batch.append(pair)
        if len(batch) == 50_000:
            _sqlite_batch(db, batch)
            batch = []
    if batch:
        _sqlite_batch(db, batch)
    db.execute("ANALYZE")
    db.commit()
    db.close()


def _sqlite_batch(db: sqlite3.Connection, batch: list[tuple[tuple[object, ...], tuple[object, ...]]]) -> None:
    db.executemany(f"INSERT INTO customers ({CUSTOMER_COLS}) VALUES (?,?,?,?,?,?,?)", [c for c, _ in batch])
    db.executemany(f"INSERT INTO customer_phones ({PHONE_COLS}) VALUES (?,?,?,?,?)", [p for _, p in batch])


async def fill_postgres(url: str, count: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        have = await conn.fetchval("SELECT count(*) FROM customers")
        if have >= count:
            return
        await conn.execute("TRUNCATE customer_phones, customers CASCADE")
        customers: list[tuple[object, ...]] = []
        phones: list[tuple[object, ...]] = []
        for c, p in customer_rows(count):
            customers.append(c)
            phones.append(p)
            if len(customers) == 100_000:
                await _pg_copy(conn, customers, phones)
                customers, phones = [], []
        if customers:
            await _pg_copy(conn, customers, phones)
        await conn.execute("ANALYZE customers; ANALYZE customer_phones")
    finally:
        await conn.close()


async def _pg_copy(
    conn: asyncpg.Connection, customers: list[tuple[object, ...]], phones: list[tuple[object, ...]]
) -> None:
    await conn.copy_records_to_table(
        "customers", records=customers, columns=[c.strip() for c in CUSTOMER_COLS.split(",")]
    )
    await conn.copy_records_to_table(
        "customer_phones", records=phones, columns=[c.strip() for c in PHONE_COLS.split(",")]
    )


def summary(timings: list[float], prefix: str) -> dict[str, float]:
    timings.sort()
    return {
        f"{prefix}p50_ms": round(statistics.median(timings), 4),
        f"{prefix}p99_ms": round(timings[int(len(timings) * 0.99) - 1], 4),
        f"{prefix}max_ms": round(timings[-1], 4),
    }


async def measure_lookups(database_url: str, count: int, lookups: int) -> dict[str, float]:
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    rng = random.Random(7)
    numbers = [(phone_of(i), f"b{i:031d}") for i in (rng.randrange(count) for _ in range(lookups))]
    # a tenth of the calls come from numbers nobody has: the "unknown caller" pop must be as fast
    numbers += [(f"+1999{rng.randrange(10**7):07d}", "") for _ in range(lookups // 10)]
    rng.shuffle(numbers)
    hot: list[float] = []
    in_session: list[float] = []
    lookup = CallerIdLookup(engine, region="US")
    try:
        for number, _ in numbers[:200]:  # warm the connections and the statement caches
            await lookup.customer_id(number)
        for number, expected in numbers:
            started = time.perf_counter_ns()
            found = await lookup.customer_id(number)
            hot.append((time.perf_counter_ns() - started) / 1e6)
            if (found or "") != expected:
                raise SystemExit(f"lookup of {number} returned {found!r}, expected {expected!r}")
        async with sessions() as session:
            for number, _ in numbers[:200]:
                await find_customer_id_by_phone(session=session, number=number, region="US")
            for number, expected in numbers:
                started = time.perf_counter_ns()
                found = await find_customer_id_by_phone(session=session, number=number, region="US")
                in_session.append((time.perf_counter_ns() - started) / 1e6)
                if (found or "") != expected:
                    raise SystemExit(f"lookup of {number} returned {found!r}, expected {expected!r}")
    finally:
        await lookup.close()
        await engine.dispose()
    return {**summary(hot, ""), **summary(in_session, "session_"), "lookups": len(hot)}


def write_import_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "kind", "phones", "emails", "city", "tags"])
        for i in range(rows):
            writer.writerow(
                [
                    f"Imported Person {i}",
                    "person",
                    f"+1{310 + i % 500:03d}{600 + i // 10000 % 300:03d}{i % 10000:04d}",
                    f"person{i}@example.org",
                    "Springfield",
                    "imported",
                ]
            )


def time_import(rows: int, workdir: Path) -> float:
    csv_path = workdir / "customers.csv"
    write_import_csv(csv_path, rows)
    env = dict(os.environ, CRM_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'import.db'}", CRM_DATA_DIR=str(workdir))
    crm = Path(sys.executable).with_name("crm")
    subprocess.run([str(crm), "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    # the progress bar goes to the terminal (stderr/stdout of the child are inherited)
    subprocess.run([str(crm), "import", "customers", str(csv_path)], env=env, check=True)
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--import-rows", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "crm-bench-lookup")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, object] = {"customers": args.customers}

    sqlite_path = args.workdir / f"lookup-{args.customers}.db"
    sqlite_url = f"sqlite+aiosqlite:///{sqlite_path}"
    engine = make_engine(sqlite_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    started = time.perf_counter()
    fill_sqlite(sqlite_path, args.customers)
    figures["sqlite_fill_s"] = round(time.perf_counter() - started, 1)
    sqlite = await measure_lookups(sqlite_url, args.customers, args.lookups)
    figures.update({f"sqlite_{k}": v for k, v in sqlite.items() if k != "lookups"})
    figures["lookups"] = sqlite["lookups"]
    print(f"SQLite: {sqlite}", file=sys.stderr)

    if not args.skip_postgres:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DB):
                await admin.execute(f'CREATE DATABASE "{PG_DB}"')
        finally:
            await admin.close()
        pg_plain = str(make_url(PG_ADMIN_URL).set(database=PG_DB))
        pg_url = pg_plain.replace("postgresql://", "postgresql+asyncpg://", 1)
        engine = make_engine(pg_url)
        await migrate.upgrade(engine)
        await engine.dispose()
        started = time.perf_counter()
        await fill_postgres(pg_plain, args.customers)
        figures["postgres_fill_s"] = round(time.perf_counter() - started, 1)
        pg = await measure_lookups(pg_url, args.customers, args.lookups)
        figures.update({f"postgres_{k}": v for k, v in pg.items() if k != "lookups"})
        print(f"PostgreSQL: {pg}", file=sys.stderr)

    if args.import_rows:
        import_dir = Path(tempfile.mkdtemp(prefix="crm-import-", dir=args.workdir))
        figures["import_rows"] = args.import_rows
        figures["import_100k_s"] = round(time_import(args.import_rows, import_dir), 2)

    figures["goal_p99_ms"] = 1.0
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
