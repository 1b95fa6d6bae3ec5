"""Benchmark: outgoing webhooks at --rate events a second to a local receiver, with a worker killed and restarted.

Set-up, as scaled out on PostgreSQL (a database of its own): this process is the web app — it publishes
`ticket.updated` domain events on its bus at --rate a second for --seconds, and its webhook worker (recording
only) writes each as a delivery row. --workers `crm webhooks` processes (the real command, in subprocesses) claim and
send the rows to a receiver (an aiohttp server in a process of its own, as a receiving system is) that answers 200.
Halfway through, worker 0 is killed with SIGKILL mid-send and started again. Figures:
- delivery_p50_ms / delivery_p99_ms / delivery_max_ms: from the event's publication to its arrival at the receiver
  (goal p99 < 50 ms); the few deliveries the killed worker held wait for their lease (CRM_WEBHOOK_LEASE_S, here
  --lease-s) and are counted as `late_over_1s`;
- lost: events published but never received (goal 0); duplicates: repeats the receiver got (the same delivery id
  again: a send cut off by the kill; receivers drop them by X-CRM-Delivery); undelivered_rows: rows not marked
  delivered once every event arrived and the marks had the lease and 10 s more to be written (goal 0);
- the stages of a delivery, p50 and p99: recorded (publication to the row's write), claimed after recorded, and
  arrived after claimed (the send); and the p99 of each second of the run, by publication (`kill_at_s` marks the
  kill), so that a tail can be put down to the restart or not.

    .venv/bin/python bench/webhooks.py                               # 1,000 events/s for 20 s
    .venv/bin/python bench/webhooks.py --rate 200 --seconds 3        # small mode (smoke run)

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOG = Path("/tmp/bench-webhooks-workers.log")  # what the workers said (warnings, errors)
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


class Arrivals:
    """The receiver: arrival time of every event, and the delivery ids seen."""

    def __init__(self) -> None:
        self.latency_ms: dict[str, float] = {}
        self.arrived_at: dict[str, float] = {}  # event id -> first arrival (epoch seconds)
        self.deliveries_seen: set[str] = set()
        self.requests = 0
        self.duplicates = 0
        self.changed = asyncio.Event()

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        arrived = time.time()
        self.requests += 1
        delivery_id = request.headers.get("X-CRM-Delivery", "")
        if delivery_id in self.deliveries_seen:
            self.duplicates += 1
        self.deliveries_seen.add(delivery_id)
        event = json.loads(body)
        published = datetime.fromisoformat(event["data"]["updated_at"]).timestamp()
        self.latency_ms.setdefault(event["id"], (arrived - published) * 1000)
        self.arrived_at.setdefault(event["id"], arrived)
        self.changed.set()
        return web.Response(text="ok")


def receiver_main(ready: Any, control: Any) -> None:
    """The receiver, in a process of its own (as a receiving system is): answers 200 to every delivery, and tells the
    bench how many events arrived (`count`) and, at the end, its figures (`report`); `clear` forgets the warm-up."""
    asyncio.run(_receiver(ready, control))


async def _receiver(ready: Any, control: Any) -> None:
    from aiohttp import web

    arrivals = Arrivals()
    app = web.Application()
    app.router.add_post("/hooks", arrivals.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    ready.put(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, control.get)
        if isinstance(command, tuple):  # ("wait", n): answered once n events have arrived
            while len(arrivals.latency_ms) < command[1]:
                arrivals.changed.clear()
                await arrivals.changed.wait()
            ready.put(len(arrivals.latency_ms))
        elif command == "clear":
            arrivals.latency_ms.clear()
            arrivals.arrived_at.clear()
            ready.put("cleared")
        elif command == "report":
            ready.put((arrivals.latency_ms, arrivals.arrived_at, arrivals.duplicates, arrivals.requests))
            break
    await runner.cleanup()


class Receiver:
    """The bench's handle on the receiver process."""

    def __init__(self) -> None:
        context = mp.get_context("spawn")
        self.ready: Any = context.Queue()
        self.control: Any = context.Queue()
        self.process = context.Process(target=receiver_main, args=(self.ready, self.control), daemon=True)
        self.process.start()
        self.port: int = self.ready.get(timeout=60)

    async def ask(self, command: Any) -> Any:
        self.control.put(command)
        return await asyncio.get_running_loop().run_in_executor(None, self.ready.get)

    async def wait_for(self, count: int) -> None:
        await self.ask(("wait", count))

    def close(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)


async def start_worker(env: dict[str, str], poll_s: float) -> Any:
    """A `crm webhooks` process, returned once it says it is sending (Python starts slowly on a busy machine)."""
    process = await asyncio.create_subprocess_exec(
        str(ROOT / ".venv" / "bin" / "crm"),
        "webhooks",
        "--poll",
        str(poll_s),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,  # where the CLI speaks
    )
    assert process.stderr is not None
    async with asyncio.timeout(180):
        while b"Webhook worker sending" not in await process.stderr.readline():
            if process.returncode is not None:
                raise RuntimeError("crm webhooks did not start")
    process.drain = asyncio.create_task(_keep_reading(process.stderr))  # a full pipe would stall the worker
    return process


async def _keep_reading(stream: Any) -> None:
    with LOG.open("ab") as log:  # noqa: ASYNC230 (a local log file, a line at a time)
        while line := await stream.readline():
            log.write(line)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import func, select, text
    from sqlalchemy.ext.asyncio import create_async_engine

    from agent_desktop.gc_policy import GcPolicy
    from crm_core import migrate
    from crm_core.bus import InMemoryEventBus
    from crm_core.db import make_engine, make_sessionmaker, unit_of_work, utcnow
    from crm_core.tickets.events import TicketUpdated
    from crm_core.users.service import SYSTEM
    from crm_core.webhooks.models import WebhookDelivery
    from crm_core.webhooks.sender import WebhookSender
    from crm_core.webhooks.service import create_subscription
    from crm_core.webhooks.urls import AddressPolicy, parse_networks
    from crm_core.webhooks.worker import WebhookWorker

    name = f"bench_webhooks_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(args.postgres, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{args.postgres.rsplit('/', 1)[0]}/{name}"
    engine = make_engine(url)
    receiver = Receiver()
    port = receiver.port
    workers: list[Any] = []
    data_dir = Path(f"/tmp/{name}")
    try:
        await migrate.upgrade(engine)
        sessions = make_sessionmaker(engine)
        policy = AddressPolicy(parse_networks("127.0.0.0/8"))
        async with unit_of_work(sessions) as session:
            await create_subscription(
                session=session,
                actor=SYSTEM,
                name="bench receiver",
                url=f"http://127.0.0.1:{port}/hooks",
                events=["ticket.updated"],
                policy=policy,
                max_in_flight=args.in_flight,
            )
        env = {
            **os.environ,
            "CRM_DATABASE_URL": url,
            "CRM_DATA_DIR": str(data_dir),
            "CRM_SECRET_KEY": "bench-secret-key-of-reasonable-length",
            "CRM_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "CRM_WEBHOOK_LEASE_S": str(args.lease_s),
            "CRM_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",  # the readiness line reaches the pipe at once
        }
        env.pop("CRM_REDIS_URL", None)  # the workers only send; this process records
        workers = [await start_worker(env, args.poll_s) for _ in range(args.workers)]
        bus = InMemoryEventBus()
        recorder = WebhookWorker(sessions, WebhookSender(policy), send=False)
        recorder.attach(bus)
        await recorder.start()
        gc_policy = GcPolicy()  # as `crm serve` runs the web app, whose recorder this is
        gc_policy.start()
        # warm-up: wait until a worker delivers one event (the subprocesses have started)
        await bus.publish(TicketUpdated("w" * 32, 0, ("status",), "open", "normal", None, None, utcnow()))
        async with asyncio.timeout(60):
            await receiver.wait_for(1)
        await receiver.ask("clear")
        total = int(args.rate * args.seconds)
        loop = asyncio.get_running_loop()
        started = loop.time()
        kill_at = total // 2
        restarted = False
        restart: asyncio.Task[Any] | None = None
        for sent in range(total):
            due = started + sent / args.rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the producer, not synchronising a test
            await bus.publish(
                TicketUpdated(uuid.uuid4().hex, sent + 1, ("status",), "open", "normal", None, None, utcnow())
            )
            if sent == kill_at and args.workers and args.restart and not restarted:
                workers[0].send_signal(signal.SIGKILL)
                await workers[0].wait()
                # started again beside the producer, which keeps publishing meanwhile
                restart = asyncio.create_task(start_worker(env, args.poll_s))
                restarted = True
        published_s = loop.time() - started
        if restart is not None:
            workers[0] = await restart
        await recorder.drain(30)
        drained = True
        try:
            async with asyncio.timeout(args.lease_s + args.drain_s):
                await receiver.wait_for(total)
        except TimeoutError:  # reported, not hidden: what had not arrived by then counts as lost
            drained = False
        # every event arrived; the last 2xx answers may not be marked yet (the marker writes them in batches)
        unmarked = select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.status != "delivered")
        marked_by = loop.time() + args.lease_s + 10
        while True:
            async with sessions() as session:
                undelivered = await session.scalar(unmarked)
            if not undelivered or loop.time() > marked_by:
                break
            await asyncio.sleep(0.1)  # polling the database for the last marks, not synchronising a test
        async with sessions() as session:
            stages = (
                await session.execute(
                    select(WebhookDelivery.body, WebhookDelivery.created_at, WebhookDelivery.last_attempt_at)
                )
            ).all()
            retried = (
                await session.execute(
                    select(WebhookDelivery.attempts, WebhookDelivery.last_error).where(WebhookDelivery.attempts > 1)
                )
            ).all()
        await recorder.stop()
        await gc_policy.stop()
        latency_ms, arrived_at, duplicates, requests = await receiver.ask("report")
        recorded_ms, claimed_ms, sent_ms = [], [], []
        by_second: dict[int, list[float]] = {}  # second of the run (by publication) -> latencies (ms)
        first = min(datetime.fromisoformat(json.loads(body)["data"]["updated_at"]) for body, _, _ in stages)
        for body, created_at, attempted_at in stages:
            event = json.loads(body)
            published = datetime.fromisoformat(event["data"]["updated_at"])
            if event["id"] in latency_ms:
                second = int((published - first).total_seconds())
                by_second.setdefault(second, []).append(latency_ms[event["id"]])
            recorded_ms.append((created_at - published).total_seconds() * 1000)
            if attempted_at is not None:
                claimed_ms.append((attempted_at - created_at).total_seconds() * 1000)
                if event["id"] in arrived_at:
                    sent_ms.append((arrived_at[event["id"]] - attempted_at.timestamp()) * 1000)
        latencies = list(latency_ms.values())
        return {
            "events": total,
            "rate_per_s": round(total / published_s, 1),
            "workers": args.workers,
            "restarts": 1 if restarted else 0,
            "database": "postgresql",
            "delivery_p50_ms": round(statistics.median(latencies), 2),
            "delivery_p99_ms": round(percentile(latencies, 0.99), 2),
            "delivery_max_ms": round(max(latencies), 2),
            "late_over_1s": sum(1 for v in latencies if v > 1000),
            "recorded_p50_ms": round(statistics.median(recorded_ms), 2),
            "recorded_p99_ms": round(percentile(recorded_ms, 0.99), 2),
            "claimed_after_recorded_p50_ms": round(statistics.median(claimed_ms), 2),
            "claimed_after_recorded_p99_ms": round(percentile(claimed_ms, 0.99), 2),
            "arrived_after_claimed_p50_ms": round(statistics.median(sent_ms), 2),
            "arrived_after_claimed_p99_ms": round(percentile(sent_ms, 0.99), 2),
            "retried": len(retried),
            "retry_errors": sorted({str(error) for _, error in retried})[:3],
            "drained_in_time": drained,
            "lost": total - len(latency_ms),
            "undelivered_rows": int(undelivered or 0),
            "duplicates": duplicates,
            "requests": requests,
            "kill_at_s": round(kill_at / args.rate, 1) if restarted else None,
            "p99_ms_by_second": [round(percentile(by_second[k], 0.99), 1) for k in sorted(by_second)],
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        for process in workers:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await process.wait()
        receiver.close()
        await engine.dispose()
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="events a second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2, help="`crm webhooks` processes (worker 0 is restarted)")
    parser.add_argument("--in-flight", type=int, default=64, help="the subscription's requests at once (per worker)")
    parser.add_argument(
        "--poll-s", type=float, default=1.0, help="how often a worker looks for due deliveries besides NOTIFY"
    )
    parser.add_argument("--lease-s", type=float, default=2.0, help="CRM_WEBHOOK_LEASE_S of the workers")
    parser.add_argument("--drain-s", type=float, default=300.0, help="how long to wait for the last deliveries")
    parser.add_argument("--no-restart", dest="restart", action="store_false", help="kill no worker")
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
