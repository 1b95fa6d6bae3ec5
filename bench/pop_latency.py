"""Benchmark: screen-pop latency from the AMI frame leaving the PBX to the pop arriving at the agent's browser client.

One server process runs what `crm serve` runs against a real PBX: the app (Quart + python-socketio, hypercorn), the
CTI bridge and the call-log writer, on a SQLite database of --customers generated customers. The demo PBX runs in
a process of its own, as Asterisk would, and the bridge reads it over loopback TCP.
Client processes connect --agents python-socketio clients to /agent, each as a signed-in agent. The demo PBX offers
calls from random customers at --rate calls/s; each pop's latency is measured from the moment the demo PBX wrote
the AgentCalled frame to the moment the client received the pop (CLOCK_MONOTONIC, shared by the processes).

The bare figures, in the same run and under the same calls: the demo PBX also sends UserEvent frames (what the
UserEvent dialplan application or AMI action sends), two per call like the two agents a call rings, each naming an
agent; the server answers each with a bare `sio.emit` to that agent's room, nothing else. They are measured the same
way, from the frame leaving the PBX to the message arriving at the client; the ratio is pop p99 / bare p99: what
the CRM's work (tracking the call, the customer's card) adds to the transport alone.
After the calls, the same bare emits are sent with no AMI frame and no calls, timed from the emit call inside the
server: what Socket.IO alone costs (`emit_only_*`), for reference.
Last, --idle agents connect and the server's resident memory is read.
The server is measured in its steady state: the agents are connected and the GC policy has ticked since.

Goal (issue #5): pop p99 <= 10 ms and pop/bare p99 ratio <= 1.5; idle 5,000 agents < 1 GiB.

    .venv/bin/python bench/pop_latency.py [--agents 1000] [--customers 1000000] [--rate 50] [--seconds 20]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SECRET_KEY = "bench-secret-key-not-for-production-0123456789"
PROBE = "CrmBenchProbe"  # the UserEvent of the bare baseline


def agent_extension(i: int) -> str:
    return str(10000 + i)


def queue_of(i: int) -> str:
    return f"q{i // 10:03d}"  # ten agents per queue


# --- the PBX, in a process of its own as Asterisk would be ----------------------------------------------------------


def pbx_main(agents: int, measured: int, customers: int, commands: Any, replies: Any) -> None:
    asyncio.run(_pbx(agents, measured, customers, commands, replies))


async def _pbx(agents: int, measured: int, customers: int, commands: Any, replies: Any) -> None:
    from caller_lookup import phone_of

    from cti_bridge.demo_pbx import DemoPbx

    queues: dict[str, list[str]] = {}
    for i in range(agents):
        queues.setdefault(queue_of(i), []).append(agent_extension(i))
    # calls go only to the queues of the agents being measured; the others are there for the idle reading
    call_queues = sorted({queue_of(i) for i in range(measured)})
    measured_agents = [agent_extension(i) for i in range(measured)]
    pbx = DemoPbx(secret="bench", queues=queues, seed=11)
    sent: dict[tuple[str, str], int] = {}
    probes: dict[str, int] = {}

    def on_frame(name: str, headers: dict[str, str], _ns: int) -> None:
        if name == "AgentCalled":
            agent = headers.get("Interface", "").removeprefix("Local/").split("@")[0]
            sent[(headers.get("Linkedid", ""), agent)] = time.monotonic_ns()
        elif name == "UserEvent" and headers.get("UserEvent") == PROBE:
            probes[headers["Probe"]] = time.monotonic_ns()

    pbx.on_frame_sent = on_frame
    await pbx.start()
    replies.put(("pbx", pbx.port))
    loop = asyncio.get_running_loop()
    rng = random.Random(5)
    while True:
        command, *args = await loop.run_in_executor(None, commands.get)
        if command == "calls":
            rate, seconds = args
            started = time.monotonic()
            placed = 0
            while time.monotonic() - started < seconds:
                placed += 1
                await pbx.place_inbound_call(
                    phone_of(rng.randrange(customers)), "", rng.choice(call_queues), answer_after_s=1.0, talk_s=2.0
                )
                for agent in rng.sample(measured_agents, 2):  # the bare baseline: two frames a call, like its rings
                    pbx.user_event(PROBE, {"Agent": agent, "Probe": f"{placed}-{agent}"})
                await asyncio.sleep(max(0.0, started + placed / rate - time.monotonic()))
            while pbx._calls:  # let the last calls ring and end
                await asyncio.gather(*list(pbx._calls.values()), return_exceptions=True)
            replies.put(("calls", placed, {f"{k[0]}|{k[1]}": v for k, v in sent.items()}, dict(probes)))
        elif command == "stop":
            break
    await pbx.stop()


# --- server process ----------------------------------------------------------------------------------------------


def server_main(db_path: str, pbx_port: int, commands: Any, replies: Any) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    profile_to = os.environ.get("BENCH_PROFILE")  # a file: where to write a cProfile of the server
    if profile_to:
        import cProfile

        cProfile.runctx("asyncio.run(_server(db_path, pbx_port, commands, replies))", globals(), locals(), profile_to)
    else:
        asyncio.run(_server(db_path, pbx_port, commands, replies))


async def _server(db_path: str, pbx_port: int, commands: Any, replies: Any) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from agent_desktop.app import create_asgi
    from agent_desktop.gc_policy import GcPolicy
    from agent_desktop.rooms import AGENT_NAMESPACE, agent_room
    from agent_desktop.runtime import build_runtime
    from crm_core.calls.writer import CallLogWriter
    from crm_core.settings import load_settings
    from cti_bridge.ami import AmiEndpoint
    from cti_bridge.asterisk import AsteriskAdapter
    from cti_bridge.normalize import OtherEvent

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
        }
    )
    runtime = await build_runtime(settings)
    bridge = AsteriskAdapter(AmiEndpoint("127.0.0.1", pbx_port, "crm", "bench"), runtime.bus, wrapup_seconds=0)
    writer = CallLogWriter(runtime.sessions, region="US")
    if not os.environ.get("BENCH_NO_WRITER"):  # diagnosis: the pops without any call-log writes
        writer.attach(runtime.bus)
    asgi, sio = create_asgi(runtime, pbx=bridge)
    probing: set[asyncio.Task[None]] = set()

    def on_pbx_event(event: object) -> None:
        """The bare baseline: a UserEvent from the PBX answered by a bare emit to the agent's room, nothing else."""
        if isinstance(event, OtherEvent) and event.headers.get("UserEvent") == PROBE:
            probe = {"probe": event.headers.get("Probe", "")}
            task = asyncio.create_task(
                sio.emit("probe", probe, room=agent_room(event.headers.get("Agent", "")), namespace=AGENT_NAMESPACE)
            )
            probing.add(task)
            task.add_done_callback(probing.discard)

    bridge.on_pbx_event = on_pbx_event
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.accesslog = None
    config.errorlog = None
    config.backlog = 4096
    stop = asyncio.Event()
    server = asyncio.create_task(hypercorn_serve(asgi, config, shutdown_trigger=stop.wait))
    await bridge.start()
    await asyncio.wait_for(bridge.resynced.wait(), 30)
    gc_policy = GcPolicy(every_s=settings.gc_freeze_every_s)  # as `crm serve` runs it
    gc_policy.start()
    replies.put(("ready", port, os.getpid()))
    loop = asyncio.get_running_loop()
    rng = random.Random(5)
    while True:
        command, *args = await loop.run_in_executor(None, commands.get)
        if command == "settle":  # the agents are connected: wait for the next tick of the GC policy, as in service
            await gc_policy.next_tick()
            replies.put(("settled", gc_policy.last_pause_ms))
        elif command == "drain":
            await writer.drain()
            replies.put(("drained",))
        elif command == "emit_only":  # bare emits alone: no AMI frame, no calls, timed inside the server
            rate, seconds, targets = args
            started = time.monotonic()
            placed = 0
            while time.monotonic() - started < seconds:
                placed += 1
                for agent in rng.sample(targets, 2):
                    await sio.emit("emit_only", {"t": time.monotonic_ns()}, room=agent_room(agent), namespace="/agent")
                await asyncio.sleep(max(0.0, started + placed / rate - time.monotonic()))
            replies.put(("emit_only", placed))
        elif command == "rss":
            status = await loop.run_in_executor(None, Path(f"/proc/{os.getpid()}/status").read_text)
            rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
            replies.put(("rss", rss_kib / 1024))
        elif command == "stop":
            break
    stop.set()
    await server
    await gc_policy.stop()
    await bridge.stop()
    await runtime.close()


# --- client processes --------------------------------------------------------------------------------------------


def cookie_for(extension: str) -> str:
    from itsdangerous import URLSafeTimedSerializer
    from quart.sessions import SecureCookieSessionInterface

    interface = SecureCookieSessionInterface()
    serializer = URLSafeTimedSerializer(
        SECRET_KEY,
        salt=interface.salt,
        serializer=interface.serializer,
        signer_kwargs={"key_derivation": interface.key_derivation, "digest_method": interface.digest_method},
    )
    session = {
        "user_id": f"bench-{extension}",
        "role": "agent",
        "extension": extension,
        "name": extension,
        "sv": 1,  # the session version of the bench user (see add_agents)
    }
    return f"crm_session={serializer.dumps(session)}"


def client_main(port: int, extensions: list[str], results: Any, control: Any) -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)  # engineio's client chats about every closed connection
    asyncio.run(_clients(port, extensions, results, control))


async def _clients(port: int, extensions: list[str], results: Any, control: Any) -> None:
    import socketio

    arrivals: list[tuple[str, str, int]] = []
    probes: list[tuple[str, int]] = []
    emit_only: list[int] = []
    clients = []

    async def connect(extension: str) -> None:
        client = socketio.AsyncClient(reconnection=False)

        def on_pop(pop: dict[str, Any], ext: str = extension) -> None:
            arrivals.append((pop["linkedid"], ext, time.monotonic_ns()))

        def on_probe(data: dict[str, Any]) -> None:
            probes.append((data["probe"], time.monotonic_ns()))

        def on_emit_only(data: dict[str, Any]) -> None:
            emit_only.append(time.monotonic_ns() - data["t"])

        client.on("pop", on_pop, namespace="/agent")
        client.on("probe", on_probe, namespace="/agent")
        client.on("emit_only", on_emit_only, namespace="/agent")
        await client.connect(
            f"http://127.0.0.1:{port}",
            headers={"Cookie": cookie_for(extension)},
            namespaces=["/agent"],
            transports=["websocket"],
            wait_timeout=60,
        )
        clients.append(client)

    for start in range(0, len(extensions), 50):
        await asyncio.gather(*(connect(e) for e in extensions[start : start + 50]))
    # One process plays hundreds of browsers, each of which has its own collector in reality. Left alone, its
    # collector scanned all their connections at once, about 210 ms once in a run, and every pop in flight to any
    # of them waited: a pause of the measuring apparatus, not of the server. So what the connections made is frozen
    # out of the scans, and the longest pause left is reported (`client_gc_max_ms`).
    gc.collect()
    gc.freeze()
    started = [0.0]
    longest = [0.0]

    def on_gc(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            longest[0] = max(longest[0], (time.perf_counter() - started[0]) * 1000)

    gc.callbacks.append(on_gc)
    results.put(("connected", len(clients)))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, control.get)  # wait until the measurements are over
    gc.callbacks.remove(on_gc)
    results.put(("data", arrivals, probes, emit_only, longest[0]))
    await loop.run_in_executor(None, control.get)  # then until the idle-memory reading is done
    await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def add_agents(path: Path, count: int) -> None:
    """The agents the clients sign in as: a socket connect checks that its cookie's user exists and is active."""
    import sqlite3

    db = sqlite3.connect(path)
    rows = [
        (f"bench-{agent_extension(i)}", f"bench{i}", agent_extension(i), "agent", "!", agent_extension(i), "[]")
        for i in range(count)
    ]
    db.executemany(
        "INSERT OR IGNORE INTO users (id, username, display_name, role, password_hash, extension, queues, is_active,"
        " must_change_password, session_version, created_at) VALUES (?,?,?,?,?,?,?,1,0,1,'2026-01-01 00:00:00')",
        rows,
    )
    db.commit()
    db.close()


def prepare_database(path: Path, customers: int) -> None:
    from caller_lookup import fill_sqlite

    from crm_core import migrate
    from crm_core.db import make_engine

    async def migrate_it() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{path}")
        await migrate.upgrade(engine)
        await engine.dispose()

    asyncio.run(migrate_it())
    fill_sqlite(path, customers)


class Control:
    """What the client processes are told ("report", then "done"): a queue for each, the i-th message of a round to
    the i-th process. With one shared queue, a process that had reported could take another's "report" as its
    "done", and the other then never reported."""

    def __init__(self, processes: int) -> None:
        self.queues: list[Any] = [mp.Queue() for _ in range(processes)]
        self._sent = 0

    def put(self, message: str) -> None:
        self.queues[self._sent % len(self.queues)].put(message)
        self._sent += 1


def start_clients(port: int, extensions: list[str], processes: int) -> tuple[list[Any], Any, Control]:
    results: Any = mp.Queue()
    control = Control(processes)
    chunks = [extensions[i::processes] for i in range(processes)]
    procs = [
        mp.Process(target=client_main, args=(port, chunk, results, queue), daemon=True)
        for chunk, queue in zip(chunks, control.queues, strict=True)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        kind, _count = results.get(timeout=600)
        assert kind == "connected"
    return procs, results, control


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=50.0, help="calls offered per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle", type=int, default=5000, help="idle agents for the memory reading (0 skips it)")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "crm-bench-pop")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    db_path = args.workdir / f"pop-{args.customers}.db"
    prepare_database(db_path, args.customers)
    add_agents(db_path, max(args.agents, args.idle))

    agents_total = max(args.agents, args.idle)
    pbx_commands: Any = mp.Queue()
    pbx_replies: Any = mp.Queue()
    pbx = mp.Process(
        target=pbx_main, args=(agents_total, args.agents, args.customers, pbx_commands, pbx_replies), daemon=True
    )
    pbx.start()
    _, pbx_port = pbx_replies.get(timeout=60)
    commands: Any = mp.Queue()
    replies: Any = mp.Queue()
    server = mp.Process(target=server_main, args=(str(db_path), pbx_port, commands, replies), daemon=True)
    server.start()
    _, port, server_pid = replies.get(timeout=300)
    extensions = [agent_extension(i) for i in range(args.agents)]
    procs, results, control = start_clients(port, extensions, args.client_processes)

    commands.put(("settle",))
    replies.get(timeout=120)
    pbx_commands.put(("calls", args.rate, args.seconds))
    _, placed, sent, probes_sent = pbx_replies.get(timeout=args.seconds * 10 + 300)
    commands.put(("drain",))
    replies.get(timeout=300)
    commands.put(("emit_only", args.rate, args.seconds, extensions))
    replies.get(timeout=args.seconds * 10 + 300)
    for _ in procs:
        control.put("report")
    arrivals: list[tuple[str, str, int]] = []
    probe_arrivals: list[tuple[str, int]] = []
    emit_only_ns: list[int] = []
    client_gc_max_ms = 0.0
    for _ in procs:
        _, got, probes, emit_only, client_gc = results.get(timeout=300)
        client_gc_max_ms = max(client_gc_max_ms, client_gc)
        arrivals += got
        probe_arrivals += probes
        emit_only_ns += emit_only
    pop_ms = [(t - sent[f"{linkedid}|{ext}"]) / 1e6 for linkedid, ext, t in arrivals if f"{linkedid}|{ext}" in sent]
    missing = sorted(set(sent) - {f"{linkedid}|{ext}" for linkedid, ext, _ in arrivals})
    if missing:
        print(f"{len(missing)} pops never arrived, e.g. {missing[:5]}", file=sys.stderr)
    bare_ms = [(t - probes_sent[probe]) / 1e6 for probe, t in probe_arrivals if probe in probes_sent]
    if len(bare_ms) != len(probes_sent):
        print(f"{len(probes_sent) - len(bare_ms)} bare messages never arrived", file=sys.stderr)
    emit_only_ms = [ns / 1e6 for ns in emit_only_ns]
    for _ in procs:
        control.put("done")
    for proc in procs:
        proc.join(timeout=120)

    idle_rss = None
    if args.idle:
        idle_procs, _, idle_control = start_clients(
            port, [agent_extension(i) for i in range(args.idle)], args.client_processes
        )
        commands.put(("rss",))
        _, idle_rss = replies.get(timeout=120)
        for _ in idle_procs:
            idle_control.put("report")
            idle_control.put("done")
        for proc in idle_procs:
            proc.join(timeout=120)
    commands.put(("stop",))
    server.join(timeout=60)
    pbx_commands.put(("stop",))
    pbx.join(timeout=60)

    figures = {
        "agents": args.agents,
        "customers": args.customers,
        "calls_per_s": args.rate,
        "calls": placed,
        "pops": len(pop_ms),
        "pops_expected": len(sent),
        "pop_p50_ms": round(statistics.median(pop_ms), 2),
        "pop_p99_ms": round(percentile(pop_ms, 0.99), 2),
        "pop_max_ms": round(max(pop_ms), 2),
        # the same path with nothing of the CRM in it: a UserEvent frame from the PBX answered by a bare emit
        "bare_p50_ms": round(statistics.median(bare_ms), 2),
        "bare_p99_ms": round(percentile(bare_ms, 0.99), 2),
        "bare_max_ms": round(max(bare_ms), 2),
        "bares": len(bare_ms),
        "ratio_p99": round(percentile(pop_ms, 0.99) / percentile(bare_ms, 0.99), 2),
        "client_gc_max_ms": round(client_gc_max_ms, 2),
        # Socket.IO alone: bare emits with no calls running, timed from the emit call inside the server
        "emit_only_p50_ms": round(statistics.median(emit_only_ms), 2),
        "emit_only_p99_ms": round(percentile(emit_only_ms, 0.99), 2),
        "ratio_p99_to_emit_only": round(percentile(pop_ms, 0.99) / percentile(emit_only_ms, 0.99), 2),
        "idle_agents": args.idle,
        "idle_5000_rss_mib": None if idle_rss is None else round(idle_rss, 1),
        "server_pid": server_pid,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
