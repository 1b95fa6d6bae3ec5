"""Test harness for the CTI bridge: a bus that can be waited on, and a bridge wired to a demo PBX over TCP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from crm_core.bus import InMemoryEventBus
from cti_bridge.ami import AmiEndpoint
from cti_bridge.asterisk import AsteriskAdapter
from cti_bridge.demo_pbx import DemoPbx
from cti_bridge.normalize import OtherEvent, PbxEvent

T = TypeVar("T")
SECRET = "crm-secret"  # the recorded PBX's AMI secret (tests/fixtures/ami/asterisk-conf)


class WatchedBus(InMemoryEventBus):
    """The real in-memory bus, keeping every published event so a test can wait for and inspect them."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[object] = []
        self._changed = asyncio.Condition()

    async def publish(self, domain_event: object) -> None:
        self.events.append(domain_event)
        await super().publish(domain_event)
        async with self._changed:
            self._changed.notify_all()

    def of(self, kind: type[T], **match: Any) -> list[T]:
        return [e for e in self.events if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items())]

    async def wait_for(
        self, kind: type[T], predicate: Callable[[T], bool] = lambda _: True, *, count: int = 1, within: float = 10
    ) -> list[T]:
        async def enough() -> list[T]:
            async with self._changed:
                while True:
                    found = [e for e in self.of(kind) if predicate(e)]
                    if len(found) >= count:
                        return found
                    await self._changed.wait()

        return await asyncio.wait_for(enough(), within)


class Harness:
    """A demo PBX, and the bridge connected to it over loopback TCP."""

    def __init__(self, pbx: DemoPbx, bridge: AsteriskAdapter, bus: WatchedBus) -> None:
        self.pbx = pbx
        self.bridge = bridge
        self.bus = bus
        self.pbx_events: list[PbxEvent] = []
        self._marker = asyncio.Event()
        bridge.on_pbx_event = self._seen

    def _seen(self, event: PbxEvent) -> None:
        self.pbx_events.append(event)
        if isinstance(event, OtherEvent) and event.headers.get("UserEvent") == "ReplayDone":
            self._marker.set()

    async def settle(self, within: float = 20) -> None:
        """Wait until the bridge has processed everything the PBX sent so far (a marker event goes last)."""
        self._marker.clear()
        self.pbx._broadcast("Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: ReplayDone")
        await asyncio.wait_for(self._marker.wait(), within)


def make_bridge(pbx: DemoPbx, bus: WatchedBus, **options: Any) -> AsteriskAdapter:
    endpoint = AmiEndpoint("127.0.0.1", pbx.port, pbx.username, pbx.secret)
    options.setdefault("backoff_initial", 0.05)
    options.setdefault("backoff_max", 0.2)
    return AsteriskAdapter(endpoint, bus, **options)
