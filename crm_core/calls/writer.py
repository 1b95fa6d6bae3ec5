"""The call-log writer: applies telephony events from the bus to call logs.

A few worker tasks write; the events of one call always go to the same worker, so they are applied in order. A
worker woken by an event gathers for GATHER_S what else that moment brings (a ring publishes the offer and the
agents' legs; under load, other calls' events) and writes it in one transaction. Waiting also lets what is live go
first: the pops and call updates that the same events put on the browsers' queues leave before the write's own work
(a session, the statements) takes the event loop, which used to hold them up by about a millisecond
(bench/generic_cti.py).

On SQLite one worker suffices (the database has one writer at a time anyway) and keeps the connection pool free
for readers such as the screen pop. If a batch fails, its events are written one by one; a database error is retried
with backoff and then logged with the event, never dropped silently. `drain()` waits until everything received so
far is written.
"""

from __future__ import annotations

import asyncio
import logging
import zlib

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.bus import EventBus
from crm_core.calls.events import CallAnswered, CallEnded, CallOffered, CallsResynced, CallTransferred
from crm_core.calls.service import TelephonyEvent, apply_call_event
from crm_core.db import unit_of_work

log = logging.getLogger(__name__)

HANDLED = (CallOffered, CallAnswered, CallTransferred, CallEnded, CallsResynced)
MAX_BATCH = 100
GATHER_S = 0.002  # how long a woken worker gathers events before it writes them


class CallLogWriter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        region: str,
        workers: int | None = None,
        attempts: int = 5,
        retry_delay: float = 0.2,
    ) -> None:
        self._sessions = sessions
        self._region = region
        self._attempts = attempts
        self._retry_delay = retry_delay
        bind = sessions.kw.get("bind")
        sqlite = bind is not None and bind.dialect.name == "sqlite"
        self._queues: list[asyncio.Queue[TelephonyEvent]] = [
            asyncio.Queue() for _ in range(workers or (1 if sqlite else 4))
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self.written = 0
        self.failed: list[TelephonyEvent] = []

    def attach(self, bus: EventBus) -> None:
        for kind in HANDLED:
            bus.subscribe(kind, self.receive)

    def receive(self, event: TelephonyEvent) -> None:
        """Never blocks the bus (the pop travels on it too): the event waits in its worker's queue."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(queue), name=f"call-log-writer-{i}")
                for i, queue in enumerate(self._queues)
            ]
        key = getattr(event, "linkedid", "")
        self._queues[zlib.crc32(key.encode()) % len(self._queues)].put_nowait(event)

    async def _work(self, queue: asyncio.Queue[TelephonyEvent]) -> None:
        while True:
            batch = [await queue.get()]
            await asyncio.sleep(GATHER_S)
            while len(batch) < MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())  # under load, one transaction carries many events
            try:
                await self._write_batch(batch)
            finally:
                for _ in batch:
                    queue.task_done()

    async def _write_batch(self, batch: list[TelephonyEvent]) -> None:
        if len(batch) > 1:
            try:
                async with unit_of_work(self._sessions) as session:
                    for event in batch:
                        await apply_call_event(session=session, event=event, region=self._region)
                self.written += len(batch)
                return
            except Exception:
                log.warning("a batch of %d call events failed; writing them one by one", len(batch))
        for event in batch:
            await self._write(event)

    async def _write(self, event: TelephonyEvent) -> None:
        key = getattr(event, "linkedid", "*resync*")
        delay = self._retry_delay
        for attempt in range(1, self._attempts + 1):
            try:
                async with unit_of_work(self._sessions) as session:
                    await apply_call_event(session=session, event=event, region=self._region)
                self.written += 1
                return
            except Exception:
                if attempt == self._attempts:
                    self.failed.append(event)
                    log.exception("could not write %s of call %s after %d attempts", type(event).__name__, key, attempt)
                    return
                log.warning("writing %s of call %s failed; retrying", type(event).__name__, key)
                await asyncio.sleep(delay)
                delay *= 2

    async def drain(self) -> None:
        for queue in self._queues:
            await queue.join()

    async def stop(self) -> None:
        await self.drain()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
