"""Per-sender sending rate: a token bucket filled at the sender's messages-per-second, each segment one token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up. `take(n)` waits until n tokens are there and spends them."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        start_full: bool = True,
    ) -> None:
        if rate <= 0:
            raise ValueError("a sending rate is more than 0 messages a second")
        self.rate = rate
        self.burst = max(burst if burst is not None else rate, 1.0)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst if start_full else 0.0
        self._at = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def wait_time(self, tokens: float) -> float:
        """Seconds until `tokens` are there (0 when they are now)."""
        self._refill()
        need = min(tokens, self.burst) - self._tokens
        return need / self.rate if need > 1e-9 else 0.0  # float dust is not worth a sleep (nor an endless loop)

    async def take(self, tokens: float) -> None:
        """Spend `tokens` (a message longer than the burst still goes, leaving the bucket in debt)."""
        async with self._lock:
            while (delay := self.wait_time(tokens)) > 0:
                await self._sleep(delay)
            self._tokens -= tokens

    def drain(self, seconds: float) -> None:
        """The provider said slow down: nothing more for about `seconds`."""
        self._refill()
        self._tokens = min(self._tokens, 0.0) - seconds * self.rate
