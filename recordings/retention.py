"""Retention: one loop deletes the recordings and transcripts past their queue's rule (none under a legal hold),
the rows first (audited, in one transaction), then the files."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.db import unit_of_work
from crm_core.recordings.service import expire_recordings
from crm_core.tasks import cancel_and_wait
from recordings.store import RecordingArchive

log = logging.getLogger(__name__)


class RetentionSweeper:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, archive: RecordingArchive, every_s: float = 3600.0
    ) -> None:
        self.sessions = sessions
        self.archive = archive
        self.every_s = every_s
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """One pass; how many files were deleted. A file whose row is deleted but that outlives a crash is only
        an orphan in the store: nothing leads to it any more."""
        async with unit_of_work(self.sessions) as session:
            keys = await expire_recordings(session=session)
        for key in keys:
            await asyncio.to_thread(self.archive.delete, key)
        if keys:
            log.info("retention deleted %s recording file(s)", len(keys))
        return len(keys)

    async def _loop(self) -> None:
        while True:
            try:
                while await self.run_once():
                    pass
            except Exception:
                log.exception("the retention pass failed; trying again later")
            await asyncio.sleep(self.every_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="recording-retention")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
