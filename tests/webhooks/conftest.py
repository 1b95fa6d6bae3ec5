"""Fixtures of the webhook tests: a session factory on the real databases, a local receiver, and workers with short
waits (backoff, lease) so retry series run in a test's time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_core.db import make_sessionmaker, unit_of_work
from crm_core.users.service import SYSTEM
from crm_core.webhooks.models import WebhookSubscription
from crm_core.webhooks.sender import WebhookSender
from crm_core.webhooks.service import create_subscription
from crm_core.webhooks.urls import AddressPolicy, parse_networks
from crm_core.webhooks.worker import RetryPolicy, WebhookWorker
from tests.webhooks.receiver import Receiver

LOCAL = AddressPolicy(parse_networks("127.0.0.0/8"))


@pytest.fixture
async def sessions(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    maker = make_sessionmaker(engine)
    try:
        yield maker
    finally:  # the PostgreSQL database is shared by the run: leave no subscription for another test's worker
        async with maker() as session, session.begin():
            await session.execute(delete(WebhookSubscription))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def subscribe(
    sessions: async_sessionmaker[AsyncSession], url: str, events: list[str], **kwargs: Any
) -> WebhookSubscription:
    async with unit_of_work(sessions) as session:
        return await create_subscription(
            session=session, actor=SYSTEM, name="Receiver", url=url, events=events, policy=LOCAL, **kwargs
        )


WorkerFactory = Callable[..., WebhookWorker]


@pytest.fixture
async def make_worker(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[WorkerFactory]:
    """Workers on `sessions` (or another factory: a restarted process), stopped at the end of the test."""
    made: list[WebhookWorker] = []

    def factory(
        on: async_sessionmaker[AsyncSession] | None = None,
        *,
        timeout_s: float = 5.0,
        window: timedelta = timedelta(hours=24),
        lease_s: float = 30.0,
        policy: AddressPolicy = LOCAL,
    ) -> WebhookWorker:
        worker = WebhookWorker(
            on or sessions,
            WebhookSender(policy, timeout_s=timeout_s),
            retry=RetryPolicy(base_s=0.02, cap_s=0.05, window=window),
            lease_s=lease_s,
            every_s=0.02,
        )
        made.append(worker)
        return worker

    yield factory
    for worker in made:
        await worker.stop(drain_s=0)
        await worker.sender.close()
