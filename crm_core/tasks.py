"""How every worker loop here waits and stops: asleep until woken or its period ends; cancelled, then awaited."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def wait_for_wake(wake: asyncio.Event, seconds: float) -> None:
    """Sleep until `wake` is set or `seconds` pass. The flag is cleared first: a wake-up that came while the loop
    was working has been served by that work."""
    wake.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), seconds)
