"""The automations worker: every so often, text each switched-on automation's new occasions (abandoned calls, tickets
opened or resolved, calls some days ago) through the outbox, each once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.sms.automations import run_automations
from crm_core.tasks import cancel_and_wait, wait_for_wake

log = logging.getLogger(__name__)


class AutomationWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        region: str = "US",
        fallback_sender: str | None = None,
        every_s: float = 30.0,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.region = region
        self.fallback_sender = fallback_sender
        self.every_s = every_s
        self.on_queued = on_queued
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """One pass; how many occasions were handled (texted, or recorded as opted out, numberless …)."""
        try:
            async with self.sessions() as session, session.begin():
                done = await run_automations(session=session, region=self.region, fallback_sender=self.fallback_sender)
        except IntegrityError:  # another worker handled the same occasion at the same moment: the next pass sees it
            log.info("an automation occasion was handled by another worker")
            return 0
        if any(d.outcome == "queued" for d in done) and self.on_queued is not None:
            self.on_queued()
        return len(done)

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("the SMS automations failed; trying again")
            await wait_for_wake(self.wake, self.every_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sms-automations")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
