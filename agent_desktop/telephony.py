"""Wires telephony into a process: the PBX adapter (Asterisk AMI, or the demo PBX when none is configured) and
the call-log writer, both on the runtime's event bus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from agent_desktop.runtime import Runtime
from crm_core.calls.writer import CallLogWriter
from crm_core.customers.models import Customer, CustomerPhone
from cti_bridge.ami import AmiEndpoint, parse_ami_url
from cti_bridge.asterisk import AsteriskAdapter
from cti_bridge.demo_pbx import DemoPbx
from cti_bridge.generic import GenericCtiAdapter, GenericPbxConfig, NumberPlan, PbxSet

log = logging.getLogger(__name__)


@dataclass
class Telephony:
    pbx: AsteriskAdapter
    writer: CallLogWriter | None
    demo: DemoPbx | None
    refresher: asyncio.Task[None] | None = None
    remote: Any = None  # the CTI process's notifier and its resources, when it emits through Redis
    generic: PbxSet | None = None  # Asterisk and the generic CTI PBXes as one adapter, when any is configured

    @property
    def adapter(self) -> AsteriskAdapter | PbxSet:
        """What the app and the dialer command: every named PBX, or Asterisk alone."""
        return self.generic if self.generic is not None else self.pbx

    async def stop(self) -> None:
        if self.refresher is not None:
            self.refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.refresher
        if self.generic is not None:
            await self.generic.stop()
        await self.pbx.stop()
        if self.remote is not None:
            await self.remote.close()
        if self.writer is not None:
            await self.writer.stop()
        if self.demo is not None:
            await self.demo.stop()


async def demo_callers(runtime: Runtime, limit: int = 200) -> list[tuple[str, str]]:
    """Numbers of customers in the database, so demo calls pop real records (plus strangers, 1 in 4)."""
    async with runtime.sessions() as session:
        rows = (
            await session.execute(
                select(CustomerPhone.e164, Customer.name)
                .join(Customer, Customer.id == CustomerPhone.customer_id)
                .where(Customer.merged_into_id.is_(None))
                .limit(limit)
            )
        ).all()
    known = [(number, name) for number, name in rows]
    strangers = [(f"+1555777{i:04d}", "") for i in range(max(1, len(known) // 3))]
    return known + strangers


async def start_telephony(runtime: Runtime, *, write_call_logs: bool = True, demo_traffic: bool = True) -> Telephony:
    settings = runtime.settings
    demo: DemoPbx | None = None
    if settings.ami_url is None:
        demo = DemoPbx(host="127.0.0.1", port=settings.demo_pbx_port or 0, recordings_dir=settings.recordings_folder)
        await demo.start()
        endpoint = AmiEndpoint("127.0.0.1", demo.port, demo.username, demo.secret)
        log.info("no PBX configured (CRM_AMI_URL): serving the demo PBX on 127.0.0.1:%s", demo.port)
    else:
        endpoint = parse_ami_url(settings.ami_url.get_secret_value())
    pbx = AsteriskAdapter(
        endpoint,
        runtime.bus,
        service_level_seconds=settings.service_level_seconds,
        wrapup_seconds=settings.wrapup_seconds,
        ping_interval=settings.ami_ping_interval_s,
        event_filter=settings.ami_event_filter,
    )
    writer = None
    if write_call_logs:
        writer = CallLogWriter(runtime.sessions, region=settings.default_region)
        writer.attach(runtime.bus)
    await pbx.start()
    telephony = Telephony(pbx=pbx, writer=writer, demo=demo)
    if settings.generic_pbxes:
        telephony.generic = PbxSet(pbx, generic_adapters(runtime))
        await telephony.generic.start()
        log.info("generic CTI PBXes: %s", ", ".join(telephony.generic.generic))
    if demo is not None and demo_traffic and settings.demo_calls_per_minute > 0:
        demo.start_traffic(settings.demo_calls_per_minute / 60.0, await demo_callers(runtime))

        async def refresh() -> None:  # customers imported after start-up call in too
            while True:
                await asyncio.sleep(30)
                demo.callers = await demo_callers(runtime)

        telephony.refresher = asyncio.create_task(refresh(), name="demo-callers")
    return telephony


def generic_adapters(runtime: Runtime) -> list[GenericCtiAdapter]:
    """An adapter per generic CTI PBX of the settings, on the runtime's bus."""
    settings = runtime.settings
    region = settings.default_region
    adapters = []
    for pbx in settings.generic_pbxes:
        plan = NumberPlan(region=pbx.region or region, outside_prefix=pbx.outside_prefix)
        blocked = frozenset(e for e in (plan.to_e164(n) for n in pbx.blocked_callers) if e)
        config = GenericPbxConfig(
            name=pbx.name,
            numbers=plan,
            dial_url=pbx.dial_url.get_secret_value() if pbx.dial_url else None,
            blocked_callers=blocked,
            outbound_caller_id=pbx.outbound_caller_id,
        )
        adapters.append(GenericCtiAdapter(config, runtime.bus, service_level_seconds=settings.service_level_seconds))
    return adapters


class RemoteNotifier:
    """Screen pops and call states from the CTI process: built here, sent to the web workers' rooms via Redis."""

    def __init__(self, runtime: Runtime, pbx: AsteriskAdapter) -> None:
        from agent_desktop.app import remote_emitter
        from agent_desktop.notifier import Notifier
        from agent_desktop.pop import PopBuilder
        from crm_core.customers.lookup import CallerIdLookup

        self.lookup = CallerIdLookup(runtime.engine, runtime.settings.default_region)
        self.emitter = remote_emitter(runtime)
        self.notifier = Notifier(
            self.emitter,  # type: ignore[arg-type]
            PopBuilder(self.lookup),
            pbx=pbx,
            wrapup_seconds=runtime.settings.wrapup_seconds,
        )
        self.notifier.attach(runtime.bus)

    async def close(self) -> None:
        from agent_desktop.app import close_manager

        await self.notifier.flush()
        await self.lookup.close()
        await close_manager(self.emitter)


def start_remote_notifier(telephony: Telephony, runtime: Runtime) -> None:
    telephony.remote = RemoteNotifier(runtime, telephony.pbx)
