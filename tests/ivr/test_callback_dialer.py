"""Callbacks are placed when an agent of the queue is free: the dialer claims the oldest and the PBX dials it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from crm_core.calls.callbacks import request_callback
from crm_core.calls.events import CallDirection, CallOffered
from crm_core.calls.models import CallbackRequest
from crm_core.db import unit_of_work
from ivr.callback_dialer import CallbackDialer
from tests.cti.conftest import start_harness
from tests.ivr.conftest import make_ivr


async def test_the_oldest_callback_is_dialled_by_a_free_agent_of_its_queue(tmp_path: Path) -> None:
    live = await make_ivr(tmp_path)
    harness = await start_harness(logged_in=True)
    try:
        async with unit_of_work(live.sessions) as session:
            first = await request_callback(session=session, number="(555) 123-0003", queue="sales", region="US")
            await request_callback(session=session, number="+15551230002", queue="sales", region="US")
        dialer = CallbackDialer(live.sessions, harness.bridge)
        assert await dialer.dial_once() == 2  # two free sales agents: each calls one back, the oldest first
        originates = [a for a in harness.pbx.actions_received if a.get("Action") == "Originate"]
        assert [(a["Channel"], a["Exten"]) for a in originates] == [
            ("Local/2001@agents", "15551230003"),
            ("Local/2002@agents", "15551230002"),
        ]
        offered = await harness.bus.wait_for(CallOffered, lambda e: e.direction is CallDirection.OUTBOUND, count=2)
        assert {o.callee_number for o in offered} == {"15551230003", "15551230002"}  # each agent's desktop pops it
        async with live.sessions() as session:
            done = await session.get(CallbackRequest, first.id)
            assert done is not None and done.status == "done" and done.attempts == 1 and done.agent == "2001"
            pending = await session.scalars(select(CallbackRequest).where(CallbackRequest.status == "pending"))
            assert list(pending) == []
        # the PBX gone: nothing is claimed for nothing
        await harness.pbx.stop()
        await asyncio.wait_for(harness.bridge.connection.disconnected.wait(), 5)
        assert await dialer.dial_once() == 0
    finally:
        await harness.bridge.stop()
        await harness.pbx.stop()
        await live.close()
