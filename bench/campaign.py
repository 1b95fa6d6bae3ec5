"""Benchmark: an SMS campaign of 1,000,000 recipients on PostgreSQL against the fake Twilio API.

A database of its own is filled (by SQL, generate_series) with --recipients customers, each with one US mobile
number; a segment holds them all. Then, measured:
- enqueue_s: creating the campaign, i.e. writing every recipient (set-based INSERT … SELECT: de-duplicated by
  number, opted-out numbers marked), until the transaction commits;
- mps_100_achieved / mps_1000_achieved: the campaign is started from one sender whose rate is set to 100, then
  (changed live on the senders table) to 1,000 segments a second; the dispatcher feeds the outbox, the outbox sends
  with the real twilio SDK to the fake Twilio API, which runs in a process of its own (an external system) and
  counts what it accepted. Achieved = accepted during a --window second window / window, after a warm-up;
- peak_rss_mib: the peak resident memory of this process (enqueue, dispatcher, outbox, SDK).
Goals (issue #14): achieved within ±2 % of configured, peak memory < 300 MB.

    .venv/bin/python bench/campaign.py [--recipients 1000000] [--window 60] \
        [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test]
    .venv/bin/python bench/campaign.py --recipients 20000 --window 5      # smoke run

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SENDER = "+12125550000"
FAKE = """
import asyncio, json, sys
sys.path.insert(0, {root!r})
from tests.fakes.twilio_api import FakeTwilio

async def main():
    fake = FakeTwilio(send_callbacks=False)
    await fake.start()
    print(json.dumps({{"base_url": fake.base_url, "sid": fake.account_sid, "token": fake.auth_token}}), flush=True)
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"count":
            print(len(fake.accepted), flush=True)
        fake.accepted.clear() if line.strip() == b"forget" else None
    await fake.stop()

asyncio.run(main())
"""


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class FakeTwilioProcess:
    """The fake Twilio API in a process of its own, asked over a pipe how many messages it accepted."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.info: dict[str, str] = {}

    async def start(self) -> dict[str, str]:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            FAKE.format(root=str(ROOT)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        self.info = json.loads(await self.process.stdout.readline())
        return self.info

    async def accepted(self) -> int:
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.process.stdin.write(b"count\n")
        await self.process.stdin.drain()
        return int(await self.process.stdout.readline())

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def fill(engine: Any, recipients: int) -> None:
    from sqlalchemy import text

    async with engine.begin() as connection:
        await connection.execute(
            text(
                """
                INSERT INTO customers (id, name, kind, country, created_at, updated_at, custom_fields, sms_opt_out)
                SELECT lpad(to_hex(g), 32, '0'), 'Customer ' || g, 'person', 'US', now(), now(), '{}', false
                FROM generate_series(1, :n) AS g
                """
            ),
            {"n": recipients},
        )
        await connection.execute(
            text(
                """
                INSERT INTO customer_phones (id, customer_id, e164, label, is_primary)
                SELECT 'f' || lpad(to_hex(g), 31, '0'), lpad(to_hex(g), 32, '0'),
                       '+1' || (2120000000 + g)::text, 'mobile', true
                FROM generate_series(1, :n) AS g
                """
            ),
            {"n": recipients},
        )
        await connection.execute(text("ANALYZE customers"))
        await connection.execute(text("ANALYZE customer_phones"))


async def measure(fake: FakeTwilioProcess, window: float) -> float:
    first, started = await fake.accepted(), time.perf_counter()
    await asyncio.sleep(window)  # the measuring window itself (a benchmark, not a test's synchronisation)
    last, ended = await fake.accepted(), time.perf_counter()
    return (last - first) / (ended - started)


async def run(
    recipients: int, window: float, warmup: float, admin_url: str, outbox_batch: int, outbox_concurrency: int
) -> dict[str, Any]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from crm_core import migrate
    from crm_core.db import make_engine, make_sessionmaker
    from crm_core.segments.service import create_segment
    from crm_core.sms.campaigns import change_campaign, create_campaign
    from crm_core.sms.senders import SenderIn, save_sender
    from crm_core.users.service import SYSTEM
    from sms_gateway.campaigns import CampaignDispatcher
    from sms_gateway.outbox import SmsOutbox
    from sms_gateway.twilio_provider import TwilioProvider

    name = f"bench_campaign_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    engine = make_engine(url, pool_size=6)
    sessions = make_sessionmaker(engine)
    fake = FakeTwilioProcess()
    figures: dict[str, Any] = {
        "recipients": recipients,
        "window_s": window,
        "outbox_batch": outbox_batch,
        "outbox_concurrency": outbox_concurrency,
    }
    try:
        await migrate.upgrade(engine)
        started = time.perf_counter()
        await fill(engine, recipients)
        figures["fill_s"] = round(time.perf_counter() - started, 2)
        print(f"filled {recipients} customers in {figures['fill_s']} s", file=sys.stderr)
        async with sessions() as session, session.begin():
            sender = await save_sender(
                session=session,
                actor=SYSTEM,
                data=SenderIn(SENDER, "long_code", "US", mps=100, a2p_10dlc_registered=True, is_default=True),
            )
            segment = await create_segment(session=session, actor=SYSTEM, name="Everyone", definition={"country": "US"})
        started = time.perf_counter()
        async with sessions() as session, session.begin():
            campaign = await create_campaign(
                session=session,
                actor=SYSTEM,
                name="Bench",
                template="Hi {first_name}, 20% off this week. Reply STOP to opt out.",
                sender=SENDER,
                segment_id=segment.id,
                quiet_start_hour=0,
                quiet_end_hour=0,
            )
        figures["enqueue_s"] = round(time.perf_counter() - started, 2)
        async with sessions() as session:
            count = await session.scalar(
                text("SELECT count(*) FROM sms_campaign_recipients WHERE campaign_id = :c AND status = 'pending'"),
                {"c": campaign.id},
            )
        figures["enqueued"] = int(count or 0)
        figures["enqueue_rss_mib"] = round(peak_rss_mib(), 1)
        print(f"enqueued {count} recipients in {figures['enqueue_s']} s", file=sys.stderr)

        info = await fake.start()
        provider = TwilioProvider(info["sid"], info["token"], api_base=info["base_url"])
        first_sent = asyncio.Event()
        send = provider.send

        async def send_and_note(message: Any) -> str:
            sid = await send(message)
            first_sent.set()
            return sid

        provider.send = send_and_note  # type: ignore[method-assign]
        outbox = SmsOutbox(
            sessions, provider, default_mps=100, batch=outbox_batch, every_s=0.1, concurrency=outbox_concurrency
        )
        # the default batch (200): a batch is rendered in one go on the event loop, so a small one keeps the sends going
        dispatcher = CampaignDispatcher(sessions, every_s=0.2, on_queued=outbox.wake.set, max_backlog=5000)
        async with sessions() as session, session.begin():
            await change_campaign(session=session, actor=SYSTEM, campaign_id=campaign.id, action="start")
        await outbox.start()
        dispatcher.start()
        try:
            await asyncio.wait_for(first_sent.wait(), 600)  # the first batch handed over and sent: it runs
            for rate in (100, 1000):
                if rate != 100:
                    async with sessions() as session, session.begin():
                        await save_sender(
                            session=session,
                            actor=SYSTEM,
                            sender_id=sender.id,
                            data=SenderIn(
                                SENDER, "long_code", "US", mps=rate, a2p_10dlc_registered=True, is_default=True
                            ),
                        )
                    outbox.rates_due()
                await asyncio.sleep(warmup)  # the new rate settles (buckets refilled, backlog fed)
                achieved = await measure(fake, window)
                figures[f"mps_{rate}_configured"] = rate
                figures[f"mps_{rate}_achieved"] = round(achieved, 2)
                figures[f"mps_{rate}_error_pct"] = round(100 * (achieved - rate) / rate, 2)
                print(f"{rate}/s configured: {achieved:.1f}/s achieved", file=sys.stderr)
        finally:
            await dispatcher.stop()
            await outbox.stop()
            await provider.close()
        figures["peak_rss_mib"] = round(peak_rss_mib(), 1)
        figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        await fake.stop()
        await engine.dispose()
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds each rate is measured over")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before each window (default window/6)")
    parser.add_argument("--batch", type=int, default=500, help="the outbox's claim size (CRM_SMS_OUTBOX_BATCH)")
    parser.add_argument(
        "--concurrency", type=int, default=48, help="the outbox's requests in flight (CRM_SMS_OUTBOX_CONCURRENCY)"
    )
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else max(2.0, args.window / 6)
    figures = asyncio.run(run(args.recipients, args.window, warmup, args.postgres, args.batch, args.concurrency))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
