"""Waiting for what a worker recorded: each (delivery id, status) it marked, as it commits it."""

from __future__ import annotations

import asyncio

from crm_core.webhooks.worker import WebhookWorker


class Marks:
    def __init__(self, *workers: WebhookWorker) -> None:
        self.seen: list[tuple[str, str]] = []
        self._changed = asyncio.Event()
        for worker in workers:
            worker.on_marked.append(self._record)

    def _record(self, delivery_id: str, status: str) -> None:
        self.seen.append((delivery_id, status))
        self._changed.set()

    async def wait_for(self, status: str, count: int = 1, within_s: float = 15.0) -> None:
        async with asyncio.timeout(within_s):
            while sum(1 for _, s in self.seen if s == status) < count:
                self._changed.clear()
                await self._changed.wait()
