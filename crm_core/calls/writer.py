"""The call-log writer: applies telephony events from the bus to call logs, one transaction per event.

Events of one call are applied in order (a lock per Linkedid); a database error is retried with backoff and then
logged with the event, never dropped silently. `drain()` waits until everything received so far is written.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.bus import EventBus
from crm_core.calls.events import CallAnswered, CallEnded, CallOffered, CallsResynced, CallTransferred
from crm_core.calls.service import TelephonyEvent, apply_call_event
from crm_core.db import unit_of_work

log = logging.getLogger(__name__)

HANDLED = (CallOffered, CallAnswered, CallTransferred, CallEnded, CallsResynced)


class CallLogWriter:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, region: str, attempts: int = 5, retry_delay: float = 0.2
    ) -> None:
        self._sessions = sessions
        self._region = region
        self._attempts = attempts
        self._retry_delay = retry_delay
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[None]] = set()
        self.written = 0
        self.failed: list[TelephonyEvent] = []

    def attach(self, bus: EventBus) -> None:
        for kind in HANDLED:
            bus.subscribe(kind, self.receive)

    def receive(self, event: TelephonyEvent) -> None:
        # never block the bus (the pop is published on it too): write in a task of its own
        task = asyncio.create_task(self._write(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, event: TelephonyEvent) -> None:
        key = getattr(event, "linkedid", "*resync*")
        async with self._locks[key]:
            delay = self._retry_delay
            for attempt in range(1, self._attempts + 1):
                try:
                    async with unit_of_work(self._sessions) as session:
                        await apply_call_event(session=session, event=event, region=self._region)
                    self.written += 1
                    break
                except Exception:
                    if attempt == self._attempts:
                        self.failed.append(event)
                        log.exception(
                            "could not write %s of call %s after %d attempts", type(event).__name__, key, attempt
                        )
                        break
                    log.warning("writing %s of call %s failed; retrying", type(event).__name__, key)
                    await asyncio.sleep(delay)
                    delay *= 2
        if isinstance(event, CallEnded | CallsResynced):
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                self._locks.pop(key, None)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
