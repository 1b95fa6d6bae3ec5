"""Places the calls back that callers asked for: when an agent of the queue is free, dial the oldest request."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.calls.callbacks import claim_next, finish_callback
from crm_core.db import unit_of_work

log = logging.getLogger(__name__)


class Dialer(Protocol):
    """The part of a PBX adapter the dialer needs (ivr does not import cti_bridge)."""

    def snapshot(self) -> Any: ...
    async def dial(self, agent: str, number: str, *, caller_id: str | None = None) -> Any: ...


class CallbackDialer:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], pbx: Dialer, *, every_s: float = 5.0) -> None:
        self._sessions = sessions
        self._pbx = pbx
        self._every = every_s
        self._task: asyncio.Task[None] | None = None
        self.placed = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="callback-dialer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            try:
                await self.dial_once()
            except Exception:
                log.exception("callback dialer round failed")
            await asyncio.sleep(self._every)

    async def dial_once(self) -> int:
        """One round: for every free agent, the oldest pending callback of one of its queues."""
        snapshot = self._pbx.snapshot()
        if not getattr(snapshot, "connected", False):
            return 0
        placed = 0
        for agent in snapshot.agents:
            if getattr(agent.state, "value", agent.state) != "available":
                continue
            for queue in agent.queues:
                async with unit_of_work(self._sessions) as session:
                    request = await claim_next(session=session, queue=queue, agent=agent.agent)
                if request is None:
                    continue
                try:
                    await self._pbx.dial(agent.agent, request.number)
                    reached = True
                except Exception as exc:  # the PBX said no: try again later (up to the attempt limit)
                    log.warning("callback %s to %s not placed: %s", request.id, request.number, exc)
                    reached = False
                async with unit_of_work(self._sessions) as session:
                    await finish_callback(session=session, request_id=request.id, reached=reached)
                placed += int(reached)
                break
        self.placed += placed
        return placed
