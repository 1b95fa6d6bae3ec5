"""Token buckets per API token: in this process by default, in Redis when CRM_REDIS_URL is set (so N web workers
share one bucket per token). A bucket holds a minute's allowance and refills continuously."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_s: float  # 0 when allowed


class RateLimiter(Protocol):
    async def take(self, key: str, per_minute: int) -> Verdict: ...

    async def close(self) -> None: ...


def retry_after_header(verdict: Verdict) -> str:
    return str(max(1, math.ceil(verdict.retry_after_s)))


class InProcessBuckets:
    """One bucket per key in this process's memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    async def take(self, key: str, per_minute: int) -> Verdict:
        now = self._clock()
        rate = per_minute / 60.0
        tokens, at = self._buckets.get(key, (float(per_minute), now))
        tokens = min(float(per_minute), tokens + (now - at) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return Verdict(True, 0.0)
        self._buckets[key] = (tokens, now)
        return Verdict(False, (1.0 - tokens) / rate)

    async def close(self) -> None:
        self._buckets.clear()


# Atomic in Redis, on Redis's own clock (the workers' clocks may differ): refill, take one or say how long to wait.
_TAKE = """
local per_minute = tonumber(ARGV[1])
local rate = per_minute / 60.0
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or per_minute
local at = tonumber(state[2]) or now
tokens = math.min(per_minute, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], 120)
return {allowed, tostring(wait)}
"""


class RedisBuckets:
    """The same buckets in Redis, shared by every web worker; keys under `prefix`."""

    def __init__(self, url: str, *, prefix: str = "crm:api-rate:") -> None:
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.from_url(url)
        self._prefix = prefix
        self._script: Any = self._redis.register_script(_TAKE)

    async def take(self, key: str, per_minute: int) -> Verdict:
        allowed, wait = await self._script(keys=[self._prefix + key], args=[per_minute])
        return Verdict(bool(int(allowed)), float(wait))

    async def close(self) -> None:
        await self._redis.aclose()
