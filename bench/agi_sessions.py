"""Benchmark: the FastAGI IVR as callers and Asterisk feel it, and its saturation throughput vs. bare panoramisk.

A server process runs the product's FastAGI server with the sample flow on a SQLite CRM of --customers generated
customers. Each caller is a random customer: identified by caller ID, presses 3 in the main menu (ticket status),
keys in a ticket number (looked up and read out), presses 1 to reach an agent, and the flow sets the CRM_*
variables. The client process is Asterisk: it sends the agi_* environment and answers every command with
`200 result=…`.

1. Paced (what callers feel): --sessions callers arrive at random (Poisson, --rate a second) and stay on the line
   together; every prompt (STREAM FILE, GET DATA, SAY NUMBER) takes 1-3 s to play before Asterisk answers, as with
   a person listening. A step's round trip is what Asterisk sees: from its answer leaving to the next command
   arriving. Goal (issue #12): p99 <= 10 ms with 2,000 callers on the line at once.
2. Saturation (throughput): the same sessions all at once with no pacing, against the flow and then against a bare
   panoramisk FastAGI handler sending the same commands with no work. Goal: flow sessions/s >= 0.5 x bare.

    .venv/bin/python bench/agi_sessions.py [--sessions 2000] [--rate 400] [--customers 1000000]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing as mp
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SCRIPT = "sample/identify"


def prepare(db_path: Path, customers: int) -> int:
    """A migrated database with `customers` customers and one open ticket; returns the ticket number."""
    from caller_lookup import fill_sqlite

    from crm_core import migrate
    from crm_core.db import make_engine, make_sessionmaker, unit_of_work
    from crm_core.tickets.service import create_ticket, find_ticket_by_number
    from crm_core.users.service import SYSTEM

    async def setup() -> int:
        engine = make_engine(f"sqlite+aiosqlite:///{db_path}")
        await migrate.upgrade(engine)
        await engine.dispose()
        fill_sqlite(db_path, customers)
        engine = make_engine(f"sqlite+aiosqlite:///{db_path}")
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            existing = await find_ticket_by_number(session=session, number=1001)
        if existing is None:
            async with unit_of_work(sessions) as session:
                await create_ticket(session=session, actor=SYSTEM, subject="Bench ticket", customer_id="b" + "0" * 31)
        await engine.dispose()
        return 1001

    return asyncio.run(setup())


async def watch_loop(lags: list[float], every_s: float = 0.005) -> None:
    """How late this process's event loop wakes a timer: time a ready step waits, whichever session it belongs to."""
    while True:
        due = time.perf_counter() + every_s
        await asyncio.sleep(every_s)
        lags.append(max(0.0, time.perf_counter() - due))


# --- servers -----------------------------------------------------------------------------------------------------


def flow_server(db_path: str, ports: Any, stop: Any, results: Any) -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)

    async def main() -> None:
        from agent_desktop.gc_policy import GcPolicy
        from crm_core.customers.lookup import CallerIdLookup
        from crm_core.db import make_engine, make_sessionmaker
        from ivr.engine import CrmContext
        from ivr.fastagi import FastAgiServer
        from ivr.flow import load_flow

        engine = make_engine(f"sqlite+aiosqlite:///{db_path}")
        crm = CrmContext(sessions=make_sessionmaker(engine), lookup=CallerIdLookup(engine, "US"), region="US")
        flow = load_flow(ROOT / "ivr" / "flows" / "sample.yaml")
        server = FastAgiServer({"sample": flow}, crm, default_flow="sample", recordings=Path(tempfile.mkdtemp()))
        async with GcPolicy():  # as `crm serve` and `crm ivr` run it
            ports.put(await server.start("127.0.0.1", 0))
            await asyncio.get_running_loop().run_in_executor(None, stop.get)  # the warm-up session
            server.stats.step_seconds.clear()
            server.stats.keep_step_times = True
            lags: list[float] = []
            watcher = asyncio.create_task(watch_loop(lags))
            ports.put("measuring")
            await asyncio.get_running_loop().run_in_executor(None, stop.get)  # the paced run is over
            watcher.cancel()
            results.put(lags)
            await asyncio.get_running_loop().run_in_executor(None, stop.get)
            results.put(server.stats.step_seconds)
            await server.stop()

    asyncio.run(main())


def bare_server(commands: list[str], ports: Any, stop: Any) -> None:
    """panoramisk's FastAGI Application with a handler that sends the same commands and does nothing else."""
    import logging

    from panoramisk.fast_agi import Application

    logging.basicConfig(level=logging.ERROR)

    async def main() -> None:
        app = Application()

        async def handler(request: Any) -> None:
            for command in commands:
                await request.send_command(command)

        app.add_route(SCRIPT, handler)
        server = await asyncio.start_server(app.handler, "127.0.0.1", 0)
        ports.put(server.sockets[0].getsockname()[1])
        await asyncio.get_running_loop().run_in_executor(None, stop.get)
        server.close()

    asyncio.run(main())


# --- Asterisk-like clients ---------------------------------------------------------------------------------------


def environment(caller: str, uniqueid: str) -> bytes:
    env = {
        "agi_network": "yes",
        "agi_network_script": SCRIPT,
        "agi_request": f"agi://127.0.0.1/{SCRIPT}",
        "agi_channel": "Local/18005550100@from-pstn-00000000;2",
        "agi_language": "en",
        "agi_type": "Local",
        "agi_uniqueid": uniqueid,
        "agi_version": "GIT-22-22.0.0",
        "agi_callerid": caller,
        "agi_calleridname": "",
        "agi_callingpres": "0",
        "agi_dnid": "unknown",
        "agi_rdnis": "unknown",
        "agi_context": "from-pstn",
        "agi_extension": "18005550100",
        "agi_priority": "7",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
    }
    return ("".join(f"{k}: {v}\n" for k, v in env.items()) + "\n").encode()


PROMPTS = ("STREAM FILE", "GET DATA", "SAY NUMBER")  # Asterisk answers these once the prompt has played


async def session(
    port: int,
    caller: str,
    uniqueid: str,
    ticket: int,
    steps: list[float],
    commands: list[str] | None,
    pace: random.Random | None = None,
) -> bool:
    keys = ["3", str(ticket), "1"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(environment(caller, uniqueid))
    await writer.drain()
    answered_at = time.perf_counter()
    ok = False
    while True:
        raw = await reader.readline()
        if not raw:
            break
        steps.append(time.perf_counter() - answered_at)
        command = raw.decode().rstrip("\n")
        if commands is not None:
            commands.append(command)
        if pace is not None and command.startswith(PROMPTS):
            await asyncio.sleep(pace.uniform(1.0, 3.0))  # the caller listens to the prompt
        if command.startswith("GET DATA"):
            reply = f"200 result={keys.pop(0)}" if keys else "200 result= (timeout)"
        elif command.startswith("SET VARIABLE TARGET_QUEUE"):
            ok = True
            reply = "200 result=1"
        elif command.startswith(("SET VARIABLE", "GET VARIABLE")):
            reply = "200 result=1"
        else:
            reply = "200 result=0"
        writer.write(reply.encode() + b"\n")
        await writer.drain()
        answered_at = time.perf_counter()
    writer.close()
    return ok or commands is None


def clients(port: int, callers: list[str], ticket: int, results: Any) -> None:
    """Every session at once, answered at once: the saturation run."""

    async def main() -> None:
        steps: list[float] = []
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(session(port, caller, f"1795462442.{i}", ticket, steps, None) for i, caller in enumerate(callers))
        )
        elapsed = time.perf_counter() - started
        results.put((elapsed, steps, sum(outcomes), len(callers), []))

    asyncio.run(main())


def paced_clients(port: int, callers: list[str], ticket: int, rate: float, results: Any) -> None:
    """Callers arriving at random (Poisson, `rate` a second), each listening to its prompts: the realistic run."""

    async def main() -> None:
        steps: list[float] = []
        rng = random.Random(5)
        on_line = peak = 0

        async def caller_call(i: int, caller: str, delay: float) -> bool:
            nonlocal on_line, peak
            await asyncio.sleep(delay)
            on_line += 1
            peak = max(peak, on_line)
            try:
                return await session(port, caller, f"1795462443.{i}", ticket, steps, [], random.Random(i))
            finally:
                on_line -= 1

        arrivals = list(itertools.accumulate(rng.expovariate(rate) for _ in callers))
        lags: list[float] = []
        watcher = asyncio.create_task(watch_loop(lags))
        started = time.perf_counter()
        calls = [caller_call(i, c, at) for i, (c, at) in enumerate(zip(callers, arrivals, strict=True))]
        outcomes = await asyncio.gather(*calls)
        watcher.cancel()
        results.put((time.perf_counter() - started, steps, sum(outcomes), peak, lags))

    asyncio.run(main())


def run_clients(
    port: int, callers: list[str], ticket: int, rate: float | None = None
) -> tuple[float, list[float], int, int, list[float]]:
    results: Any = mp.Queue()
    if rate is None:
        process = mp.Process(target=clients, args=(port, callers, ticket, results))
    else:
        process = mp.Process(target=paced_clients, args=(port, callers, ticket, rate, results))
    process.start()
    outcome = results.get(timeout=900)
    process.join(timeout=60)
    return outcome  # type: ignore[no-any-return]


def main() -> None:
    from caller_lookup import phone_of

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=400.0, help="paced run: callers arriving a second (Poisson)")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "crm-bench-agi")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    db_path = args.workdir / f"agi-{args.customers}.db"
    ticket = prepare(db_path, args.customers)
    rng = random.Random(3)
    callers = [phone_of(rng.randrange(args.customers)) for _ in range(args.sessions)]

    ports: Any = mp.Queue()
    stop: Any = mp.Queue()
    server_steps: Any = mp.Queue()
    server = mp.Process(target=flow_server, args=(str(db_path), ports, stop, server_steps))
    server.start()
    port = ports.get(timeout=120)
    # one session first, to learn the commands the flow sends (the bare handler sends the same)
    commands: list[str] = []
    asyncio.run(session(port, callers[0], "1795462442.0", ticket, [], commands))
    stop.put("warmed up")
    ports.get(timeout=60)
    paced_s, paced_steps, paced_routed, on_line, client_lags = run_clients(port, callers, ticket, args.rate)
    stop.put("paced run over")
    server_lags = server_steps.get(timeout=60)
    flow_s, flow_steps, routed, _, _ = run_clients(port, callers, ticket)
    stop.put("stop")
    work_steps = server_steps.get(timeout=60)
    server.join(timeout=60)

    bare = mp.Process(target=bare_server, args=(commands, ports, stop))
    bare.start()
    bare_port = ports.get(timeout=120)
    _, bare_paced_steps, _, _, bare_client_lags = run_clients(bare_port, callers, ticket, args.rate)
    bare_s, bare_steps, _, _, _ = run_clients(bare_port, callers, ticket)
    stop.put("stop")
    bare.join(timeout=60)

    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000

    figures = {
        "concurrent_sessions": on_line,  # callers on the line at once at the peak of the paced run
        "sessions": args.sessions,
        "arrivals_per_s": args.rate,
        "customers": args.customers,
        "steps_per_session": len(commands),
        "sessions_routed": paced_routed,
        # a step as Asterisk sees it with people listening to the prompts: answer out, next command in
        "paced_step_p50_ms": round(p(paced_steps, 0.5), 3),
        "paced_step_p99_ms": round(p(paced_steps, 0.99), 3),
        "paced_step_max_ms": round(max(paced_steps) * 1000, 3),
        "paced_seconds": round(paced_s, 3),
        # the same paced callers against the bare handler: what this machine and loopback give anyway
        "bare_paced_step_p99_ms": round(p(bare_paced_steps, 0.99), 3),
        # how late each process's event loop ran a ready timer during the paced runs (CPU contention, GC): the part
        # of a round trip that is neither the flow's work nor the network
        "server_loop_lag_p99_ms": round(p(server_lags, 0.99), 3),
        "client_loop_lag_p99_ms": round(p(client_lags, 0.99), 3),
        "bare_client_loop_lag_p99_ms": round(p(bare_client_lags, 0.99), 3),
        # the server's own work per step (answer in, next command out), over both runs
        "server_step_p99_ms": round(p(work_steps, 0.99), 3),
        # saturation: every session at once, no pacing (queueing of all of them on both sides of loopback)
        "saturated_sessions_routed": routed,
        "saturated_step_p99_ms": round(p(flow_steps, 0.99), 3),
        "bare_saturated_step_p99_ms": round(p(bare_steps, 0.99), 3),
        "flow_seconds": round(flow_s, 3),
        "bare_seconds": round(bare_s, 3),
        "flow_sessions_per_s": round(args.sessions / flow_s, 1),
        "bare_sessions_per_s": round(args.sessions / bare_s, 1),
        "ratio": round(bare_s / flow_s, 3),
        "goal_paced_step_p99_ms": 10,
        "goal_ratio": 0.5,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
