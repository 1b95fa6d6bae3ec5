"""Garbage-collector policy of the long-running processes: keep long-lived objects out of the collector's way.

Why: CPython's collector stops the event loop while it scans. Its oldest generation holds everything that lived a
while — above all the state of every connected agent (sockets, tasks, queues: ~200 objects per agent). With 1,000
agents a full collection took 50–77 ms here, and every pop that arrived meanwhile waited for it (issue #5: it was
the whole pop p99). So the oldest generation is no longer collected automatically; instead, every `every_s`
seconds a tick collects it — only what is *not* frozen yet, what arrived since the last tick — and freezes whatever
survived (`gc.freeze`), i.e. moves it out of every later scan. An agent connected for a shift is scanned once.
A tick's pause grows with what survived since the last one: at every 2 s, a busy server's ticks paused it for up to
24 ms (bench/generic_cti.py, 150 pushed CTI events/s); every 0.25 s, for at most 7 ms, for the same total.

The price: a frozen object that later dies inside a reference cycle is not reclaimed while it is frozen (the state of
an agent who disconnected, mostly; a call's own objects die by reference counting, see crm_core.calls.service). So
when the process's resident memory has grown by `reclaim_growth` (1.0 = doubled) since the last full collection, the
tick unfreezes everything, collects it all and freezes again: the long pause, only when memory doubled. (Counting
the frozen objects instead would cost a walk over all of them at every tick.)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import time

log = logging.getLogger(__name__)

_NEVER = 1 << 30  # collections of the middle generation before an automatic full one: never, the ticks do it


def resident_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: the peak is the best cheap figure
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class GcPolicy:
    def __init__(self, *, every_s: float = 0.25, reclaim_growth: float = 1.0) -> None:
        if every_s <= 0:
            raise ValueError("every_s must be positive")
        if reclaim_growth <= 0:
            raise ValueError("reclaim_growth must be positive")
        self.every_s = every_s
        self.reclaim_growth = reclaim_growth
        self.ticks = 0
        self.reclaims = 0
        self.last_pause_ms = 0.0
        self._baseline = 0
        self._thresholds: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._ticked = asyncio.Event()

    def start(self) -> None:
        """Freeze what start-up made (it lives as long as the process) and tick every `every_s` from now on."""
        gc.collect()
        gc.freeze()
        self._baseline = resident_bytes()
        if self._thresholds is None:
            self._thresholds = gc.get_threshold()
            young, middle, _ = self._thresholds
            gc.set_threshold(young, middle, _NEVER)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gc-policy")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    async def __aenter__(self) -> GcPolicy:
        self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def next_tick(self) -> None:
        """Wait for the next tick (the pop benchmark measures a server in its steady state)."""
        self._ticked.clear()
        await self._ticked.wait()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            self.tick()

    def tick(self) -> None:
        started = time.perf_counter()
        gc.collect()  # only what arrived since the last tick: the frozen objects are not scanned
        gc.freeze()
        self.ticks += 1
        resident = resident_bytes()
        if resident > self._baseline * (1 + self.reclaim_growth):
            self.reclaim()
            log.info(
                "GC policy: full collection at %.0f MiB resident, %.1f ms",
                resident / 2**20,
                (time.perf_counter() - started) * 1000,
            )
        self.last_pause_ms = (time.perf_counter() - started) * 1000
        self._ticked.set()

    def reclaim(self) -> None:
        """Collect everything, the frozen objects too (the long pause), and freeze the survivors again."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.reclaims += 1
        self._baseline = resident_bytes()
