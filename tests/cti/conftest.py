"""Fixtures of the CTI tests: a demo PBX on a free port and a bridge logged in to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cti_bridge.demo_pbx import DemoPbx, TraceFrame, load_trace
from tests.cti.helpers import SECRET, Harness, WatchedBus, make_bridge

TRACES = Path(__file__).parent.parent / "fixtures" / "ami"


def trace(name: str) -> list[TraceFrame]:
    ami = TRACES / f"{name}.ami"
    if not ami.exists():
        ami = TRACES / f"{name}.ami.gz"
    timing = TRACES / f"{name}.timing.jsonl"
    return load_trace(ami, timing if timing.exists() else TRACES / f"{name}.timing.jsonl.gz")


async def start_harness(*, logged_in: bool = True, time_scale: float = 0.01, **bridge_options: object) -> Harness:
    pbx = DemoPbx(secret=SECRET, time_scale=time_scale, logged_in=logged_in, seed=7)
    await pbx.start()
    bus = WatchedBus()
    bridge = make_bridge(pbx, bus, **bridge_options)
    await bridge.start()
    harness = Harness(pbx, bridge, bus)
    await bus_wait_resynced(harness)
    return harness


async def bus_wait_resynced(harness: Harness) -> None:
    import asyncio

    await asyncio.wait_for(harness.bridge.resynced.wait(), 10)


@pytest.fixture
async def replay_harness() -> AsyncIterator[Harness]:
    """An idle PBX with nobody logged in: the recorded trace brings its own agents and calls."""
    harness = await start_harness(logged_in=False)
    try:
        yield harness
    finally:
        await harness.bridge.stop()
        await harness.pbx.stop()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """A demo PBX with agents 1001/1002 in support and 2001/2002 in sales, running 100x faster than life."""
    harness = await start_harness(logged_in=True)
    try:
        yield harness
    finally:
        await harness.bridge.stop()
        await harness.pbx.stop()
