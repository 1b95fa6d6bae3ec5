"""The event bus: in-process delivery, serialisation, and the Redis variant over a real Redis server."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from crm_core.bus import InMemoryEventBus, RedisEventBus, dumps_event, loads_event
from crm_core.calls.events import (
    AgentRinging,
    CallDirection,
    CallEnded,
    CallLegSummary,
    CallOutcome,
)
from tests.conftest import REDIS_URL

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def ended_call() -> CallEnded:
    leg = CallLegSummary(
        agent="1001",
        channel="Local/1001@agents-00000001;1",
        queue="support",
        rang_at=NOW,
        answered_at=NOW,
        ended_at=NOW,
    )
    return CallEnded(
        linkedid="1763890000.1",
        direction=CallDirection.INBOUND,
        outcome=CallOutcome.ANSWERED,
        caller_number="+15551230001",
        caller_name="Alice Example",
        callee_number="18005550100",
        queue="support",
        agent="1001",
        offered_at=NOW,
        answered_at=NOW,
        ended_at=NOW,
        wait_seconds=2.5,
        talk_seconds=6.0,
        hold_seconds=0.0,
        hangup_cause=16,
        legs=(leg,),
        crm_vars=(("CRM_CONTACT_ID", "42"),),
    )


def test_events_survive_serialisation_with_their_types() -> None:
    original = ended_call()
    copy = loads_event(dumps_event(original))
    assert copy == original
    assert isinstance(copy, CallEnded)
    assert copy.outcome is CallOutcome.ANSWERED and copy.direction is CallDirection.INBOUND
    assert isinstance(copy.legs[0], CallLegSummary) and copy.legs[0].rang_at == NOW


def test_unregistered_objects_are_refused() -> None:
    with pytest.raises(TypeError, match="not a dataclass event"):
        dumps_event({"linkedid": "x"})


async def test_in_memory_bus_isolates_a_failing_handler() -> None:
    bus = InMemoryEventBus()
    got: list[object] = []

    def broken(_: object) -> None:
        raise RuntimeError("wallboard bug")

    async def pop(event: object) -> None:
        got.append(event)

    bus.subscribe(AgentRinging, broken)
    bus.subscribe(AgentRinging, pop)
    bus.subscribe(CallEnded, pop)
    ringing = AgentRinging(
        linkedid="1.1",
        agent="1001",
        agent_channel="Local/1001@agents-1;1",
        queue="support",
        caller_number="+15551230001",
        caller_name="Alice",
        waited_seconds=1.0,
        rang_at=NOW,
    )
    await bus.publish(ringing)
    assert got == [ringing]


@pytest.mark.redis
async def test_redis_bus_carries_events_between_processes() -> None:
    channel = f"crm:test:{uuid.uuid4().hex}"
    cti_process, web_worker = RedisEventBus(REDIS_URL, channel), RedisEventBus(REDIS_URL, channel)
    await cti_process.start()
    await web_worker.start()
    arrived: asyncio.Queue[object] = asyncio.Queue()
    web_worker.subscribe(CallEnded, arrived.put_nowait)
    try:
        # garbage on the channel (another version, a typo in a script) is dropped; what follows still arrives
        raw = aioredis.from_url(REDIS_URL)
        await raw.publish(channel, b"{not json")
        await raw.publish(channel, b'{"__event__": "NoSuchEvent", "fields": {}}')
        await raw.aclose()
        await cti_process.publish(ended_call())
        received = await asyncio.wait_for(arrived.get(), timeout=5)
        assert received == ended_call()
        assert arrived.empty()
    finally:
        await cti_process.close()
        await web_worker.close()


@pytest.mark.redis
async def test_redis_bus_refuses_publish_before_start() -> None:
    bus = RedisEventBus(REDIS_URL, "crm:test:unused")
    with pytest.raises(RuntimeError, match="start"):
        await bus.publish(ended_call())
