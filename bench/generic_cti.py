"""Benchmark: screen-pop latency of the generic CTI path, from the HTTP request's arrival to the agent's browser client,
beside the Asterisk (AMI) path measured in the same run by the same server and clients.

One server process runs the app (Quart + python-socketio, hypercorn), the Asterisk bridge (reading the demo PBX,
in a process of its own, over loopback TCP), a generic CTI PBX `bench` and the call-log writer, on a SQLite database
of --customers generated customers, with --agents agents, each mapped from a PBX user name ("Agent 10000").
Client processes connect one python-socketio client per agent to /agent, signed in as that agent.

Phase 1, the Asterisk path (as bench/pop_latency.py): the demo PBX offers --rate calls/s for --seconds to ringall
queues of ten agents; a pop's latency runs from the demo PBX writing AgentCalled to the client receiving the pop.
Phase 2, the generic path: a poster process pushes the same traffic as Zammad-style generic CTI events over HTTP:
per call a newCall naming two of the queue's agents, as many as the demo PBX rings (user[] as form data, the
caller's number written without its plus), an answer after 1 s, a hangup 2 s later. A pop's latency runs from the
request's arrival at the server (an ASGI wrapper notes it before the app sees the request) to the client receiving
the pop (CLOCK_MONOTONIC, shared by the processes).

Both phases carry the same calls per second: the generic one posts at the rate the demo PBX reached (on a loaded
machine it falls short of --rate; `ami_calls_per_s` and `generic_calls_per_s` say what each carried).

Goal (issue #16): generic pop p99 <= 10 ms, and <= 1.5 x the Asterisk path's p99 in the same run.

Beside each round trip the server notes where a pop spends its time (`slices_ms`, p50 and p99 of each slice, ms):
the generic path as `http_to_handler` (arrival until the event's fields reach `apply_event`: the fast path's checks,
the token, reading and parsing the body), `handler_to_push` (the event's check, the PBX directory, the pop's
preparation), `push_to_ring` (the adapter: its lock, the call tracker, the domain events before AgentRinging),
`ring_to_sent` (the notifier, until the pop is on the browser's Engine.IO queue), `sent_to_wire` (on that queue
until the connection's WebSocket writer has written the frame: what else the event loop runs first) and
`wire_to_client` (the kernel and the client process); the Asterisk path as `frame_to_ring` (the bridge reading and
normalising AMI), `ring_to_sent`, `sent_to_wire` and `wire_to_client`. `gc` gives each phase's collector pauses and
`stalls` the event loop's stalls over 5 ms (a probe task that wakes every 5 ms), so that a tail can be put down to a
pause or not; and `gc.client_max_ms` the client processes' longest collector pause (what their connections made is
frozen first, as in bench/pop_latency.py).

    .venv/bin/python bench/generic_cti.py [--agents 1000] [--customers 100000] [--rate 50] [--seconds 20]
    .venv/bin/python bench/generic_cti.py --agents 40 --customers 2000 --rate 5 --seconds 3   # smoke run

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import multiprocessing as mp
import os
import random
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pop_latency import (  # noqa: E402  (bench/ is a folder of scripts)
    SECRET_KEY,
    add_agents,
    agent_extension,
    pbx_main,
    percentile,
    prepare_database,
    queue_of,
    start_clients,
)

PBX = "bench"
TOKEN = "bench-generic-cti-token-0123456789"
CALL_HEADER = "x-bench-call"  # the poster names the call of each request, so that its arrival can be noted
POP_FRAME = '42/agent,["pop",'  # a pop as Engine.IO and Socket.IO frame it on the /agent namespace


def pbx_user(i: int) -> str:
    return f"Agent {agent_extension(i)}"


def add_mappings(path: Path, count: int) -> None:
    """Each agent's PBX user name mapped to the agent, as an admin does in Admin → PBXes; and its queue."""
    db = sqlite3.connect(path)
    db.executemany(
        "INSERT OR IGNORE INTO pbx_user_mappings (id, pbx, pbx_user, pbx_user_key, user_id, created_at) "
        "VALUES (?,?,?,?,?,'2026-01-01 00:00:00')",
        [
            (f"map-{i:027d}", PBX, pbx_user(i), pbx_user(i).casefold(), f"bench-{agent_extension(i)}")
            for i in range(count)
        ],
    )
    db.executemany(
        "UPDATE users SET queues = ? WHERE id = ?",
        [(json.dumps([queue_of(i)]), f"bench-{agent_extension(i)}") for i in range(count)],
    )
    db.commit()
    db.close()


# --- server process ----------------------------------------------------------------------------------------------


def server_main(db_path: str, pbx_port: int, gc_every_s: float | None, commands: Any, replies: Any) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_server(db_path, pbx_port, gc_every_s, commands, replies))


async def _server(db_path: str, pbx_port: int, gc_every_s: float | None, commands: Any, replies: Any) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from agent_desktop import cti_edge
    from agent_desktop.app import create_asgi
    from agent_desktop.gc_policy import GcPolicy
    from agent_desktop.runtime import build_runtime
    from agent_desktop.telephony import generic_adapters
    from crm_core.calls.events import AgentRinging
    from crm_core.calls.writer import CallLogWriter
    from crm_core.settings import load_settings
    from cti_bridge.ami import AmiEndpoint
    from cti_bridge.asterisk import AsteriskAdapter
    from cti_bridge.generic import CtiEventKind, PbxSet

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    settings = load_settings(
        {
            "CRM_DATABASE_URL": f"sqlite+aiosqlite:///{db_path}",
            "CRM_DATA_DIR": str(Path(db_path).parent),
            "CRM_SECRET_KEY": SECRET_KEY,
            "CRM_WRAPUP_SECONDS": "0",
            "CRM_LOG_LEVEL": "WARNING",
            **({"CRM_GC_FREEZE_EVERY_S": str(gc_every_s)} if gc_every_s is not None else {}),
            "CRM_GENERIC_PBXES": json.dumps([{"name": PBX, "token": TOKEN, "region": "US"}]),
        }
    )
    runtime = await build_runtime(settings)
    bridge = AsteriskAdapter(AmiEndpoint("127.0.0.1", pbx_port, "crm", "bench"), runtime.bus, wrapup_seconds=0)
    pbxes = PbxSet(bridge, generic_adapters(runtime))
    writer = CallLogWriter(runtime.sessions, region="US")
    writer.attach(runtime.bus)
    marks: dict[str, dict[str, int]] = {name: {} for name in ("arrived", "began", "pushed", "rung", "sent", "wired")}
    arrived, began, pushed, rung, sent, wired = (
        marks[n] for n in ("arrived", "began", "pushed", "rung", "sent", "wired")
    )

    def on_ring(event: AgentRinging) -> None:  # subscribed before the notifier: the moment the ring is published
        rung[f"{event.linkedid}|{event.agent}"] = time.monotonic_ns()

    runtime.bus.subscribe(AgentRinging, on_ring)
    asgi, _sio = create_asgi(runtime, pbx=pbxes)
    app = asgi.other_asgi_app.app  # Quart, behind the generic CTI fast path (agent_desktop/cti_edge.py)
    header = CALL_HEADER.encode()
    apply_event = cti_edge.apply_event

    # the fast path hands over the fields (an event refused to it and left to the route is not marked)
    async def timed_apply(adapter: Any, fields: dict[str, Any]) -> Any:
        if fields.get("event") == ["newCall"]:
            began.setdefault(fields["callId"][0], time.monotonic_ns())
        return await apply_event(adapter, fields)

    cti_edge.apply_event = timed_apply  # type: ignore[assignment]
    adapter = pbxes.generic[PBX]
    push = adapter.push

    async def timed_push(event: Any, agents: Any, **kwargs: Any) -> Any:
        if event.kind is CtiEventKind.NEW_CALL:
            pushed.setdefault(event.call_id, time.monotonic_ns())
        return await push(event, agents, **kwargs)

    adapter.push = timed_push  # type: ignore[method-assign]
    notifier = app.extensions["notifier"]
    emit_agent = notifier._emit_agent

    async def timed_emit(agent: str, event: str, data: dict[str, Any]) -> None:
        await emit_agent(agent, event, data)
        if event == "pop":  # on the browser's Engine.IO queue
            sent[f"{data['linkedid']}|{agent}"] = time.monotonic_ns()

    notifier._emit_agent = timed_emit
    from engineio.async_drivers import asgi as engineio_asgi

    ws_send = engineio_asgi.WebSocket.send

    async def timed_ws_send(self: Any, message: Any) -> None:
        await ws_send(self, message)
        if isinstance(message, str) and message.startswith(POP_FRAME):  # written to the browser's connection
            data = json.loads(message[message.index(",") + 1 :])[1]
            wired[f"{data['linkedid']}|{data['agent']}"] = time.monotonic_ns()

    engineio_asgi.WebSocket.send = timed_ws_send  # type: ignore[method-assign]
    pauses: list[tuple[int, float]] = []  # (generation, ms) of each collection
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], (time.perf_counter() - gc_started[0]) * 1000))

    gc.callbacks.append(on_gc)
    stalls: list[float] = []

    async def stall_probe() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            late = (time.perf_counter() - before - 0.005) * 1000
            if late > 5.0:
                stalls.append(late)

    probe = asyncio.create_task(stall_probe())

    async def timed(scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Notes when a pushed event arrived, before the app (or anything else of ours) sees the request."""
        if scope["type"] == "http":
            now = time.monotonic_ns()
            for name, value in scope.get("headers", ()):
                if name == header:
                    arrived[value.decode()] = now
                    break
        await asgi(scope, receive, send)

    config = Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.accesslog = None
    config.errorlog = None
    config.backlog = 4096
    stop = asyncio.Event()
    server = asyncio.create_task(hypercorn_serve(timed, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    await bridge.start()
    await pbxes.start()
    await asyncio.wait_for(bridge.resynced.wait(), 30)
    gc_policy = GcPolicy(every_s=settings.gc_freeze_every_s)
    gc_policy.start()
    replies.put(("ready", port, os.getpid()))
    loop = asyncio.get_running_loop()
    while True:
        command, *_args = await loop.run_in_executor(None, commands.get)
        if command == "settle":
            await gc_policy.next_tick()
            pauses.clear()
            stalls.clear()
            replies.put(("settled",))
        elif command == "drain":  # the end of a phase: its marks, collections and stalls
            await writer.drain()
            replies.put(
                (
                    "drained",
                    {name: dict(found) for name, found in marks.items()},
                    pbxes.generic[PBX].events_received,
                    list(pauses),
                    list(stalls),
                    gc_policy.reclaims,
                )
            )
            pauses.clear()
            stalls.clear()
        elif command == "stop":
            break
    probe.cancel()
    gc.callbacks.remove(on_gc)
    stop.set()
    await server
    await gc_policy.stop()
    await pbxes.stop()
    await bridge.stop()
    await writer.stop()
    await runtime.close()


# --- the generic CTI gateway: pushes the calls -----------------------------------------------------------------


def poster_main(port: int, measured: int, customers: int, rate: float, seconds: float, replies: Any) -> None:
    asyncio.run(_poster(port, measured, customers, rate, seconds, replies))


async def _poster(port: int, measured: int, customers: int, rate: float, seconds: float, replies: Any) -> None:
    import aiohttp
    from caller_lookup import phone_of

    queues: dict[str, list[int]] = {}
    for i in range(measured):
        queues.setdefault(queue_of(i), []).append(i)
    names = sorted(queues)
    url = f"http://127.0.0.1:{port}/api/cti/{PBX}/{TOKEN}"
    rng = random.Random(7)
    failures: list[str] = []
    rung: dict[str, list[str]] = {}  # callId -> the agents its newCall named

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:

        async def push(call_id: str, fields: list[tuple[str, str]]) -> None:
            form = aiohttp.FormData(fields)
            try:
                async with http.post(url, data=form, headers={CALL_HEADER: call_id}) as response:
                    await response.read()
                    if response.status != 200:
                        failures.append(f"{call_id}: {response.status}")
            except aiohttp.ClientError as exc:
                failures.append(f"{call_id}: {exc!r}")

        async def call(n: int) -> None:
            queue = rng.choice(names)
            agents = rng.sample(queues[queue], min(2, len(queues[queue])))  # two rung, as the demo PBX's calls ring
            call_id = f"c{n:07d}"
            rung[call_id] = [agent_extension(i) for i in agents]
            number = phone_of(rng.randrange(customers)).lstrip("+")  # as gateways write it: no plus
            common = [("from", number), ("to", "18005550100"), ("direction", "in"), ("callId", call_id)]
            await push(
                call_id, [("event", "newCall"), *common, ("queue", queue), *(("user[]", pbx_user(i)) for i in agents)]
            )
            await asyncio.sleep(1.0)
            await push(f"{call_id}-a", [("event", "answer"), *common, ("user[]", pbx_user(agents[0]))])
            await asyncio.sleep(2.0)
            await push(f"{call_id}-h", [("event", "hangup"), *common, ("cause", "normalClearing")])

        tasks = []
        started = time.monotonic()
        placed = 0
        while time.monotonic() - started < seconds:
            placed += 1
            tasks.append(asyncio.create_task(call(placed)))
            await asyncio.sleep(max(0.0, started + placed / rate - time.monotonic()))
        await asyncio.gather(*tasks)
    replies.put(("posted", placed, rung, failures))


# --- the run ------------------------------------------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, float | int]:
    """p50 and p99 of a slice (ms), and how many pops it was measured on."""
    if not values:
        return {"n": 0}
    return {"p50": round(statistics.median(values), 3), "p99": round(percentile(values, 0.99), 3), "n": len(values)}


def tail_slices(each: list[tuple[float, list[float]]], names: list[str], p99: float) -> dict[str, float | int]:
    """The pops whose round trip is at or over the p99: how many, and the median of each of their slices (ms)."""
    tail = [parts for total, parts in each if total >= p99]
    if not tail:
        return {"n": 0}
    figures: dict[str, float | int] = {"n": len(tail)}
    for i, name in enumerate(names):
        figures[name] = round(statistics.median(parts[i] for parts in tail), 3)
    return figures


def by_second(at_ns: list[int], latency_ms: list[float]) -> list[float]:
    """The p99 of the pops of each second of a phase, by their request's arrival: a tail spread over the run, or one
    second's burst (a collection, the directory read again, a stall)."""
    if not at_ns:
        return []
    first = min(at_ns)
    seconds: dict[int, list[float]] = {}
    for at, ms in zip(at_ns, latency_ms, strict=True):
        seconds.setdefault((at - first) // 1_000_000_000, []).append(ms)
    return [round(percentile(seconds.get(s, []), 0.99), 1) for s in range(max(seconds) + 1)]


def pause_figures(pauses: list[tuple[int, float]]) -> dict[str, Any]:
    """A phase's collections: how many, of which full (generation 2), their longest and total pause (ms), and the
    longest pause of each generation."""
    return {
        "count": len(pauses),
        "full": sum(1 for generation, _ in pauses if generation == 2),
        "max_ms": round(max((ms for _, ms in pauses), default=0.0), 2),
        "total_ms": round(sum(ms for _, ms in pauses), 1),
        "max_ms_by_generation": {
            str(g): round(max((ms for gen, ms in pauses if gen == g), default=0.0), 2) for g in (0, 1, 2)
        },
    }


def stall_figures(stalls: list[float]) -> dict[str, float | int]:
    return {"over_5ms": len(stalls), "max_ms": round(max(stalls, default=0.0), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=50.0, help="calls offered per second, on each path")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--gc-every-s", type=float, default=None, help="the server's CRM_GC_FREEZE_EVERY_S")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "crm-bench-generic-cti")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    db_path = args.workdir / f"generic-{args.customers}-{os.getpid()}.db"
    prepare_database(db_path, args.customers)
    add_agents(db_path, args.agents)
    add_mappings(db_path, args.agents)

    pbx_commands: Any = mp.Queue()
    pbx_replies: Any = mp.Queue()
    pbx = mp.Process(
        target=pbx_main, args=(args.agents, args.agents, args.customers, pbx_commands, pbx_replies), daemon=True
    )
    pbx.start()
    _, pbx_port = pbx_replies.get(timeout=60)
    commands: Any = mp.Queue()
    replies: Any = mp.Queue()
    server = mp.Process(
        target=server_main, args=(str(db_path), pbx_port, args.gc_every_s, commands, replies), daemon=True
    )
    server.start()
    _, port, server_pid = replies.get(timeout=300)
    extensions = [agent_extension(i) for i in range(args.agents)]
    procs, results, control = start_clients(port, extensions, args.client_processes)
    commands.put(("settle",))
    replies.get(timeout=120)

    # phase 1: the Asterisk path
    pbx_commands.put(("calls", args.rate, args.seconds))
    _, ami_calls, ami_sent, _probes = pbx_replies.get(timeout=args.seconds * 10 + 300)
    commands.put(("drain",))
    _, ami_marks, _, ami_pauses, ami_stalls, _ = replies.get(timeout=300)
    # phase 2: the generic CTI path, the same traffic pushed over HTTP: at the rate the demo PBX reached (on a loaded
    # machine it falls short of --rate, and the two paths must carry the same load to be compared)
    generic_rate = min(args.rate, ami_calls / args.seconds)
    posted: Any = mp.Queue()
    poster = mp.Process(
        target=poster_main,
        args=(port, args.agents, args.customers, generic_rate, args.seconds, posted),
        daemon=True,
    )
    poster.start()
    _, generic_calls, rung, failures = posted.get(timeout=args.seconds * 10 + 300)
    poster.join(timeout=60)
    commands.put(("drain",))
    _, marks, events_received, generic_pauses, generic_stalls, reclaims = replies.get(timeout=300)
    arrived = marks["arrived"]
    load_1m = os.getloadavg()[0]

    for _ in procs:
        control.put("report")
    arrivals: list[tuple[str, str, int]] = []
    client_gc_max_ms = 0.0
    for _ in procs:
        _, got, _probe_arrivals, _emit_only, client_gc = results.get(timeout=300)
        client_gc_max_ms = max(client_gc_max_ms, client_gc)
        arrivals += got
    for _ in procs:
        control.put("done")
    for proc in procs:
        proc.join(timeout=120)
    commands.put(("stop",))
    server.join(timeout=60)
    pbx_commands.put(("stop",))
    pbx.join(timeout=60)
    db_path.unlink(missing_ok=True)

    prefix = f"{PBX}:"
    ami_ms = [
        (t - ami_sent[f"{linkedid}|{ext}"]) / 1e6
        for linkedid, ext, t in arrivals
        if not linkedid.startswith(prefix) and f"{linkedid}|{ext}" in ami_sent
    ]
    ami_slices: dict[str, list[float]] = {
        name: [] for name in ("frame_to_ring", "ring_to_sent", "sent_to_wire", "wire_to_client")
    }
    ami_each: list[tuple[float, list[float]]] = []  # each pop: its round trip and its slices
    for linkedid, ext, t in arrivals:
        key = f"{linkedid}|{ext}"
        if linkedid.startswith(prefix) or key not in ami_sent:
            continue
        ring, out, wire = ami_marks["rung"].get(key), ami_marks["sent"].get(key), ami_marks["wired"].get(key)
        if ring is not None and out is not None and wire is not None:
            parts = [(end - start) / 1e6 for start, end in itertools.pairwise((ami_sent[key], ring, out, wire, t))]
            for name, part in zip(ami_slices, parts, strict=True):
                ami_slices[name].append(part)
            ami_each.append(((t - ami_sent[key]) / 1e6, parts))
    generic_ms: list[float] = []
    generic_at: list[int] = []  # each pop's request arrival (ns), for the p99 of each second
    generic_slices: dict[str, list[float]] = {
        name: []
        for name in (
            "http_to_handler",
            "handler_to_push",
            "push_to_ring",
            "ring_to_sent",
            "sent_to_wire",
            "wire_to_client",
        )
    }
    generic_each: list[tuple[float, list[float]]] = []
    seen: set[tuple[str, str]] = set()
    for linkedid, ext, t in arrivals:
        if linkedid.startswith(prefix):
            call_id = linkedid[len(prefix) :]
            if call_id in arrived and ext in rung.get(call_id, ()):
                generic_ms.append((t - arrived[call_id]) / 1e6)
                generic_at.append(arrived[call_id])
                seen.add((call_id, ext))
                key = f"{linkedid}|{ext}"
                points = (
                    arrived[call_id],
                    marks["began"].get(call_id),
                    marks["pushed"].get(call_id),
                    marks["rung"].get(key),
                    marks["sent"].get(key),
                    marks["wired"].get(key),
                    t,
                )
                if None not in points:
                    parts = [(end - start) / 1e6 for start, end in itertools.pairwise(points)]
                    for name, part in zip(generic_slices, parts, strict=True):
                        generic_slices[name].append(part)
                    generic_each.append(((t - arrived[call_id]) / 1e6, parts))
    expected = sum(len(agents) for agents in rung.values())
    if failures:
        print(f"{len(failures)} pushes failed, e.g. {failures[:3]}", file=sys.stderr)
    if len(seen) != expected:
        print(f"{expected - len(seen)} generic pops never arrived", file=sys.stderr)
    pop_p99 = percentile(generic_ms, 0.99)
    ami_p99 = percentile(ami_ms, 0.99)
    figures = {
        "agents": args.agents,
        "customers": args.customers,
        "calls_per_s": args.rate,
        "seconds": args.seconds,
        "calls": generic_calls,
        "generic_calls_per_s": round(generic_rate, 1),
        "ami_calls_per_s": round(ami_calls / args.seconds, 1),
        "events_received": events_received,
        "push_failures": len(failures),
        "pops": len(generic_ms),
        "pops_expected": expected,
        "pop_p50_ms": round(statistics.median(generic_ms), 2),
        "pop_p99_ms": round(pop_p99, 2),
        "pop_max_ms": round(max(generic_ms), 2),
        "ami_calls": ami_calls,
        "ami_pops": len(ami_ms),
        "ami_pops_expected": len(ami_sent),
        "ami_pop_p50_ms": round(statistics.median(ami_ms), 2),
        "ami_pop_p99_ms": round(ami_p99, 2),
        "ratio_to_ami": round(pop_p99 / ami_p99, 2),
        "slices_ms": {
            "generic": {name: spread(values) for name, values in generic_slices.items()},
            "ami": {name: spread(values) for name, values in ami_slices.items()},
        },
        "tail_slices_ms": {  # the pops at or over their path's p99: the median of each slice (what makes the tail)
            "generic": tail_slices(generic_each, list(generic_slices), pop_p99),
            "ami": tail_slices(ami_each, list(ami_slices), ami_p99),
        },
        "gc": {
            "ami": pause_figures(ami_pauses),
            "generic": pause_figures(generic_pauses),
            "reclaims": reclaims,
            "client_max_ms": round(client_gc_max_ms, 2),  # the client processes' longest pause (both phases)
        },
        "stalls": {"ami": stall_figures(ami_stalls), "generic": stall_figures(generic_stalls)},
        "generic_p99_ms_by_second": by_second(generic_at, generic_ms),
        "load_avg_1m": round(load_1m, 2),
        "server_pid": server_pid,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
