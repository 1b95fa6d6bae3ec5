"""The domain event bus: in-process by default, Redis pub/sub when several processes must share events."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import Enum
from typing import Any, Protocol, get_type_hints

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[None] | None]


class EventBus(Protocol):
    def subscribe(self, event_type: type[Any] | None, handler: Handler) -> None: ...
    async def publish(self, domain_event: object) -> None: ...


class InMemoryEventBus:
    """Delivers each event to the handlers of its type (and to catch-all handlers), in subscription order.

    A failing handler is logged and does not stop the others: one broken consumer (say, the wallboard)
    must never cost a call log or a screen pop.
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Any] | None, list[Handler]] = defaultdict(list)

    def subscribe(self, event_type: type[Any] | None, handler: Handler) -> None:
        self._handlers[event_type].append(handler)

    def unsubscribe(self, event_type: type[Any] | None, handler: Handler) -> None:
        self._handlers[event_type].remove(handler)

    async def publish(self, domain_event: object) -> None:
        for handler in (*self._handlers.get(type(domain_event), ()), *self._handlers.get(None, ())):
            try:
                result = handler(domain_event)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("event handler %r failed on %s", handler, type(domain_event).__name__)


# --- serialisation for the cross-process variant -------------------------------------------------------

_EVENT_TYPES: dict[str, type[Any]] = {}


@functools.cache
def field_names(kind: type[Any]) -> tuple[str, ...]:
    """A dataclass's field names, looked up once per class (events are converted on every publish and emit)."""
    return tuple(f.name for f in dataclasses.fields(kind))


def register_event(cls: type[Any]) -> type[Any]:
    """Class decorator: make a frozen dataclass event known to the cross-process bus."""
    _EVENT_TYPES[cls.__name__] = cls
    return cls


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"__dt__": value.isoformat()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "__event__": type(value).__name__,
            "fields": {name: _encode(getattr(value, name)) for name in field_names(type(value))},
        }
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(value: Any) -> Any:
    """Events are frozen: every list comes back as a tuple, every tagged dict as its type."""
    if isinstance(value, dict):
        if set(value) == {"__dt__"}:
            return datetime.fromisoformat(value["__dt__"])
        if set(value) == {"__event__", "fields"}:
            cls = _EVENT_TYPES[value["__event__"]]
            enums = _enum_fields(cls)
            fields = {k: _decode(v) for k, v in value["fields"].items()}
            return cls(**{k: enums[k](v) if k in enums and v is not None else v for k, v in fields.items()})
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


_ENUM_FIELDS: dict[str, dict[str, type[Enum]]] = {}


def _enum_fields(cls: type[Any]) -> dict[str, type[Enum]]:
    """Fields typed with an Enum (or an optional one): JSON brings them back as strings, we bring back the Enum."""
    known = _ENUM_FIELDS.get(cls.__name__)
    if known is not None:
        return known
    found: dict[str, type[Enum]] = {}
    for name, hint in get_type_hints(cls).items():
        for candidate in (hint, *getattr(hint, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, Enum):
                found[name] = candidate
                break
    _ENUM_FIELDS[cls.__name__] = found
    return found


def dumps_event(domain_event: object) -> str:
    if not dataclasses.is_dataclass(domain_event) or isinstance(domain_event, type):
        raise TypeError(f"{domain_event!r} is not a dataclass event")
    if type(domain_event).__name__ not in _EVENT_TYPES:
        raise TypeError(f"{type(domain_event).__name__} is not registered with @register_event")
    return json.dumps(_encode(domain_event))


def loads_event(raw: str | bytes) -> object:
    return _decode(json.loads(raw))


class RedisEventBus:
    """Publishes events to a Redis channel and delivers what any process published to local handlers."""

    def __init__(self, redis_url: str, channel: str = "crm:events") -> None:
        self._url = redis_url
        self._channel = channel
        self._local = InMemoryEventBus()
        self._redis: Any = None
        self._reader: asyncio.Task[None] | None = None

    def subscribe(self, event_type: type[Any] | None, handler: Handler) -> None:
        self._local.subscribe(event_type, handler)

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self._url)
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self._channel)
        self._reader = asyncio.create_task(self._read(pubsub), name="redis-event-bus")

    async def _read(self, pubsub: Any) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError

        delay = 0.5
        while True:
            try:
                async for message in pubsub.listen():
                    delay = 0.5
                    if message.get("type") != "message":
                        continue
                    try:
                        domain_event = loads_event(message["data"])
                    except (KeyError, ValueError, TypeError):
                        log.warning("dropped an undecodable event from %s", self._channel)
                        continue
                    await self._local.publish(domain_event)
            except (RedisConnectionError, OSError) as exc:
                # redis-py reconnects the pub/sub connection and resubscribes on the next listen()
                log.warning("lost the Redis event channel (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def publish(self, domain_event: object) -> None:
        if self._redis is None:
            raise RuntimeError("RedisEventBus.start() was not awaited")
        await self._redis.publish(self._channel, dumps_event(domain_event))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._redis is not None:
            await self._redis.aclose()
