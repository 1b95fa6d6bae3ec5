"""The customer pool's clock: owned customers with no contact for the protection period return to the pool."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.customers.service import release_stale_owners
from crm_core.db import utcnow
from crm_core.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class PoolReturner:
    """One loop for all customers (one indexed UPDATE a pass); safe with several processes, since a pass only
    releases what is still stale when it runs."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        protection_days: int,
        every_s: float = 600.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.protection_days = protection_days
        self.every_s = every_s
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> list[str]:
        async with self.sessions() as session, session.begin():
            released = await release_stale_owners(session=session, days=self.protection_days, now=self.clock())
        if released:
            log.info(
                "returned %s customer(s) to the pool after %s days without contact", len(released), self.protection_days
            )
        return released

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # a database hiccup must not end the pool's clock
                log.exception("returning customers to the pool failed; trying again later")
            await asyncio.sleep(self.every_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="pool-returner")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
