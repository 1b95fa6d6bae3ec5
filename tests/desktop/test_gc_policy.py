"""The GC policy of `crm serve` and `crm cti`: survivors are frozen out of later scans, garbage is still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from agent_desktop.gc_policy import GcPolicy


class Node:
    def __init__(self) -> None:
        self.peer: Node | None = None


def cycle() -> Node:
    a, b = Node(), Node()
    a.peer, b.peer = b, a
    return a


def scanned(obj: object) -> bool:
    """True while the collector still scans `obj` (frozen objects are in no generation)."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture
def policy() -> Iterator[GcPolicy]:
    before = gc.get_threshold()
    made = GcPolicy(every_s=3600, reclaim_growth=0.05)
    yield made
    gc.unfreeze()  # give the test process its collector back
    gc.set_threshold(*before)


async def test_survivors_are_frozen_and_garbage_is_collected(policy: GcPolicy) -> None:
    threshold = gc.get_threshold()
    policy.start()
    assert gc.get_threshold()[2] > 10**6  # the oldest generation waits for the ticks
    agent_state = cycle()  # lives on, like a connected agent's socket
    call_state = cycle()  # dies before the tick, in a cycle
    call_gone = weakref.ref(call_state)
    del call_state
    assert scanned(agent_state)
    policy.tick()
    assert call_gone() is None  # collected by the tick, not frozen
    assert not scanned(agent_state)  # frozen: later collections skip it
    assert policy.ticks == 1 and policy.last_pause_ms >= 0
    await policy.stop()
    assert gc.get_threshold() == threshold


async def test_a_frozen_cycle_that_dies_is_reclaimed_when_memory_grew(policy: GcPolicy) -> None:
    policy.start()
    agent_state = cycle()
    policy.tick()
    gone = weakref.ref(agent_state)
    del agent_state  # the agent logged out: a frozen cycle, now garbage
    policy.tick()
    assert gone() is not None and policy.reclaims == 0  # no full collection while memory holds still
    ballast = bytearray(64 * 2**20)  # more than 5 % of the process
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page so it is resident
    policy.tick()
    assert policy.reclaims == 1 and gone() is None
    del ballast
    await policy.stop()


async def test_the_task_ticks_until_stopped() -> None:
    before = gc.get_threshold()
    policy = GcPolicy(every_s=0.01)
    try:
        policy.start()
        await policy.next_tick()
        await policy.next_tick()
        assert policy.ticks >= 2
    finally:
        await policy.stop()
        gc.unfreeze()
        gc.set_threshold(*before)
    with pytest.raises(ValueError):
        GcPolicy(every_s=0)


async def test_as_a_context_it_ticks_inside_and_gives_the_collector_back_after() -> None:
    before = gc.get_threshold()
    try:
        async with GcPolicy(every_s=0.01) as policy:
            assert gc.get_threshold()[2] > 10**6
            await policy.next_tick()
            assert policy.ticks >= 1
        assert gc.get_threshold() == before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
