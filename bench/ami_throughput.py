"""Benchmark: AMI event throughput of the full CTI bridge vs. panoramisk's bare Manager, and frame→pop latency.

The stream is the recorded burst of 200 calls (tests/fixtures/ami/burst_200_calls.ami.gz, a real Asterisk 22),
repeated --copies times with fresh Uniqueids/Linkedids/channel names so every copy is new calls. A server process
streams it over loopback TCP as fast as the client reads. In the same run it is read by
  (a) the bridge: parse, normalise, track, publish domain events to the in-memory bus (no database), and
  (b) panoramisk's Manager with one no-op handler for every event.
Goal (issue #3): bridge/panoramisk ≥ 1.0 and p99 AgentCalled-frame-arrival → AgentRinging-published < 2 ms.

    .venv/bin/python bench/ami_throughput.py [--copies 5]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import multiprocessing
import re
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from panoramisk import Manager  # noqa: E402

from crm_core.bus import InMemoryEventBus  # noqa: E402
from crm_core.calls.events import AgentRinging, CallEnded  # noqa: E402
from cti_bridge.ami import AmiEndpoint  # noqa: E402
from cti_bridge.asterisk import AsteriskAdapter  # noqa: E402
from cti_bridge.normalize import OtherEvent, PbxEvent  # noqa: E402

BURST = ROOT / "tests" / "fixtures" / "ami" / "burst_200_calls.ami.gz"
DONE = b"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: BenchDone\r\n\r\n"
_ID = re.compile(rb"\b(\d{10})\.(\d+)\b")
_SEQ = re.compile(rb"-([0-9a-f]{8});([12])")


def build_stream(copies: int) -> tuple[bytes, int, int]:
    raw = gzip.decompress(BURST.read_bytes())
    frames = [f for f in raw.split(b"\r\n\r\n") if f.startswith(b"Event: ")]
    frames = [f for f in frames if not f.startswith((b"Event: FullyBooted", b"Event: SuccessfulAuth"))]
    block = b"\r\n\r\n".join(frames) + b"\r\n\r\n"
    copies_bytes = []
    for k in range(copies):
        # copy k: ids 1795462442.17 -> 1795462442.<k>00017, channels -0000002a;1 -> -<k>000002a;1
        renamed = _ID.sub(lambda m, k=k: m.group(1) + b"." + str(k).encode() + m.group(2).rjust(5, b"0"), block)
        renamed = _SEQ.sub(lambda m, k=k: b"-" + str(k).encode() + m.group(1)[1:] + b";" + m.group(2), renamed)
        copies_bytes.append(renamed)
    calls = sum(f.startswith(b"Event: AgentCalled") for f in frames) * copies
    return b"".join(copies_bytes) + DONE, len(frames) * copies + 1, calls


def serve(port_queue: multiprocessing.Queue, copies: int) -> None:  # type: ignore[type-arg]
    """The PBX side, in its own process: answers login and actions, streams the burst on `Events`."""
    stream, _, _ = build_stream(copies)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        buffer = b""
        while True:
            data = await reader.read(65536)
            if not data:
                break
            buffer += data
            while (end := buffer.find(b"\r\n\r\n")) >= 0:
                block, buffer = buffer[:end].decode(), buffer[end + 4 :]
                fields = dict(line.split(": ", 1) for line in block.split("\r\n") if ": " in line)
                action, action_id = fields.get("Action", ""), fields.get("ActionID", "")
                if action == "Login":
                    writer.write(
                        f"Response: Success\r\nActionID: {action_id}\r\nMessage: Authentication accepted"
                        "\r\n\r\n".encode()
                    )
                elif action in ("CoreShowChannels", "Status", "QueueStatus", "QueueSummary"):
                    writer.write(
                        f"Response: Success\r\nActionID: {action_id}\r\nEventList: start\r\nMessage: "
                        f"will follow\r\n\r\nEvent: {action}Complete\r\nActionID: {action_id}\r\n"
                        "EventList: Complete\r\nListItems: 0\r\n\r\n".encode()
                    )
                elif action == "Events":
                    writer.write(f"Response: Success\r\nActionID: {action_id}\r\nEvents: On\r\n\r\n".encode())
                    await writer.drain()
                    view = memoryview(stream)
                    for start in range(0, len(stream), 1 << 16):
                        writer.write(view[start : start + (1 << 16)])
                        await writer.drain()
                else:
                    writer.write(f"Response: Success\r\nActionID: {action_id}\r\n\r\n".encode())
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_queue.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


async def run_bridge(port: int, events: int) -> tuple[float, list[float], int]:
    bus = InMemoryEventBus()
    latencies: list[float] = []
    ended = 0
    # all events, as panoramisk gets them: this bench's own server streams the recording and filters nothing
    bridge = AsteriskAdapter(
        AmiEndpoint("127.0.0.1", port, "crm", "bench"), bus, ping_interval=3600, event_filter=False
    )

    def on_ringing(_: AgentRinging) -> None:
        latencies.append((time.perf_counter_ns() - bridge.current_chunk_arrived_ns) / 1e6)

    def on_ended(_: CallEnded) -> None:
        nonlocal ended
        ended += 1

    bus.subscribe(AgentRinging, on_ringing)
    bus.subscribe(CallEnded, on_ended)
    done = asyncio.Event()

    def watch(event: PbxEvent) -> None:
        if isinstance(event, OtherEvent) and event.headers.get("UserEvent") == "BenchDone":
            done.set()

    bridge.on_pbx_event = watch
    await bridge.start()
    await asyncio.wait_for(bridge.resynced.wait(), 10)
    started = time.perf_counter()
    await bridge.connection.action({"Action": "Events", "EventMask": "on"})
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    await bridge.stop()
    return elapsed, latencies, ended


async def run_panoramisk(port: int) -> float:
    done = asyncio.Event()
    seen = 0

    def no_op(_manager: Manager, _event: object) -> None:
        nonlocal seen
        seen += 1

    def finish(_manager: Manager, event: object) -> None:
        if getattr(event, "get", lambda _k: None)("UserEvent") == "BenchDone":
            done.set()

    logged_in = asyncio.Event()
    manager = Manager(
        host="127.0.0.1",
        port=port,
        username="crm",
        secret="bench",
        ping_delay=3600,
        ping_interval=3600,
        loop=asyncio.get_running_loop(),
        on_login=lambda _m: logged_in.set(),
    )
    manager.register_event("*", no_op)
    manager.register_event("UserEvent", finish)
    await manager.connect()
    await asyncio.wait_for(logged_in.wait(), 10)
    started = time.perf_counter()
    await manager.send_action({"Action": "Events", "EventMask": "on"})
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    manager.close()
    return elapsed


def free_port_server(copies: int) -> tuple[multiprocessing.Process, int]:
    ports: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    process = multiprocessing.Process(target=serve, args=(ports, copies), daemon=True)
    process.start()
    return process, ports.get(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=5, help="how many times the 200-call burst is streamed")
    args = parser.parse_args()
    _, events, _ = build_stream(args.copies)
    socket.setdefaulttimeout(60)

    server, port = free_port_server(args.copies)
    try:
        bridge_s, latencies, ended = asyncio.run(run_bridge(port, events))
        panoramisk_s = asyncio.run(run_panoramisk(port))
        # a second round of each, interleaved, so neither profits from a warmer machine
        bridge_s2, latencies2, _ = asyncio.run(run_bridge(port, events))
        panoramisk_s2 = asyncio.run(run_panoramisk(port))
    finally:
        server.terminate()
    bridge_rate = events / min(bridge_s, bridge_s2)
    panoramisk_rate = events / min(panoramisk_s, panoramisk_s2)
    latencies = sorted(latencies + latencies2)
    figures = {
        "events": events,
        "calls_ended": ended,
        "agent_called": len(latencies),
        "bridge_events_per_s": round(bridge_rate),
        "panoramisk_events_per_s": round(panoramisk_rate),
        "ratio": round(bridge_rate / panoramisk_rate, 3),
        "ringing_p50_ms": round(statistics.median(latencies), 3),
        "ringing_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 3),
        "ringing_max_ms": round(latencies[-1], 3),
        "goal_ratio": 1.0,
        "goal_ringing_p99_ms": 2.0,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
