"""Scaled out with real Redis: two web workers and a separate CTI process; a pop emitted by the CTI process reaches
the agent on whichever worker it is connected to, and only that agent."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path

import pytest
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from agent_desktop.app import create_asgi
from agent_desktop.remote_pbx import PbxCommandServer, RemotePbx
from agent_desktop.runtime import build_runtime
from agent_desktop.telephony import RemoteNotifier
from crm_core.calls.events import AgentRinging
from crm_core.settings import load_settings
from cti_bridge.adapter import CommandError, CommandErrorCode
from cti_bridge.ami import AmiEndpoint
from cti_bridge.asterisk import AsteriskAdapter
from tests.conftest import REDIS_URL
from tests.desktop.live import LiveCenter, start_center, wait_event

pytestmark = pytest.mark.redis


async def web_worker(tmp: Path, channel: str, stop: asyncio.Event) -> tuple[str, asyncio.Task[None], object, RemotePbx]:
    settings = load_settings(
        {
            "CRM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'crm.db'}",
            "CRM_DATA_DIR": str(tmp),
            "CRM_SECRET_KEY": "test-secret-key-of-reasonable-length",
            "CRM_REDIS_URL": REDIS_URL,
            "CRM_SOCKETIO_CHANNEL": channel,
        }
    )
    runtime = await build_runtime(settings)
    remote = RemotePbx(REDIS_URL, channel)
    await remote.start()
    asgi, _ = create_asgi(runtime, pbx=remote, notify=False)  # type: ignore[arg-type]  # emits nothing of its own
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1
    task = asyncio.create_task(hypercorn_serve(asgi, config, shutdown_trigger=stop.wait))
    return f"http://127.0.0.1:{port}", task, runtime, remote


async def test_pops_from_the_cti_process_reach_agents_on_either_worker(tmp_path: Path) -> None:
    # the database, users and customers of the center (its own app is not used here)
    center: LiveCenter = await start_center(tmp_path)
    await center.bridge.stop()
    channel = f"crm-test-{uuid.uuid4().hex}"
    stop = asyncio.Event()
    first_url, first_task, first_runtime, first_pbx = await web_worker(tmp_path, channel, stop)
    second_url, second_task, second_runtime, second_pbx = await web_worker(tmp_path, channel, stop)
    # the CTI process: its own bus, bridge and notifier, emitting through Redis
    cti_runtime = await build_runtime(
        load_settings(
            {
                "CRM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}",
                "CRM_DATA_DIR": str(tmp_path),
                "CRM_REDIS_URL": REDIS_URL,
                "CRM_SOCKETIO_CHANNEL": channel,
                "CRM_WRAPUP_SECONDS": "0",
                "CRM_SECRET_KEY": "test-secret-key-of-reasonable-length",
            }
        )
    )
    bridge = AsteriskAdapter(AmiEndpoint("127.0.0.1", center.pbx.port, "crm", "demo-secret"), cti_runtime.bus)
    remote = RemoteNotifier(cti_runtime, bridge)
    commands = PbxCommandServer(REDIS_URL, channel, bridge, resender=remote.notifier)
    await commands.start()
    await bridge.start()
    await asyncio.wait_for(bridge.resynced.wait(), 10)
    try:
        center.base_url = first_url
        agent_on_first = await center.socket("agent1001", "/agent")
        center.base_url = second_url
        agent_on_second = await center.socket("agent2001", "/agent")
        support = await center.pbx.place_inbound_call(
            "+15551230001", "Alice Example", "support", agent="1001", answer_after_s=5, talk_s=1
        )
        sales = await center.pbx.place_inbound_call(
            "+15551230002", "Bob Example", "sales", agent="2001", answer_after_s=5, talk_s=1
        )
        pop = await wait_event(agent_on_first, "pop", lambda p: p["linkedid"] == support)
        assert pop["customer"]["name"] == "Alice Example"
        other = await wait_event(agent_on_second, "pop", lambda p: p["linkedid"] == sales)
        assert other["customer"]["name"] == "Bob Example"
        await wait_event(agent_on_second, "call_state", lambda s: s["linkedid"] == sales and s["state"] == "ended")
        assert not [d for e, d in agent_on_second.received if e == "pop" and d["linkedid"] == support]  # type: ignore[attr-defined]
        assert not [d for e, d in agent_on_first.received if e == "pop" and d["linkedid"] == sales]  # type: ignore[attr-defined]
        # call controls from a web-only worker run in the CTI process, and their effect comes back as events
        paused = await agent_on_first.call("pause", {"reason": "Lunch"}, namespace="/agent")
        assert paused == {"ok": True}
        state = await wait_event(agent_on_first, "agent_state", lambda s: s["state"] == "paused")
        assert state["reason"] == "Lunch" and state["agent"] == "1001"
        refused = await agent_on_second.call("queue_login", {"queue": "nosuchqueue"}, namespace="/agent")
        assert refused["ok"] is False and refused["code"] == "invalid"
        await agent_on_first.disconnect()
        # the agent's browser reconnects, behind the load balancer to the other worker, while a call rings it:
        # the CTI process re-sends the pop and the call state to that browser alone
        rang = asyncio.Event()
        cti_runtime.bus.subscribe(AgentRinging, lambda event: rang.set() if event.agent == "1001" else None)
        ringing = await center.pbx.place_inbound_call(
            "+15551230001", "Alice Example", "support", agent="1001", answer_after_s=400, talk_s=1
        )
        await asyncio.wait_for(rang.wait(), 10)  # the CTI process sees it ring
        center.base_url = second_url
        back = await center.socket("agent1001", "/agent")
        again = await wait_event(back, "pop", lambda p: p["linkedid"] == ringing)
        assert again["resent"] is True and again["customer"]["name"] == "Alice Example" and again["agent"] == "1001"
        state = await wait_event(back, "call_state", lambda s: s["linkedid"] == ringing)
        assert state["state"] == "ringing"
        assert not [d for e, d in agent_on_second.received if e == "pop" and d["linkedid"] == ringing]  # type: ignore[attr-defined]
        # a supervisor connecting to a web-only worker gets the live snapshot from the CTI process
        center.base_url = first_url
        supervisor = await center.socket("boss", "/supervisor")
        snapshot = await wait_event(supervisor, "snapshot", lambda s: True)
        assert snapshot["connected"] is True
        assert ringing in [call["linkedid"] for call in snapshot["calls"]]
        await back.disconnect()
        await supervisor.disconnect()
        await agent_on_second.disconnect()
        # without a CTI process listening, a command says so at once
        await commands.stop()
        with pytest.raises(CommandError) as gone:
            await first_pbx.unpause("1001")
        assert gone.value.code is CommandErrorCode.PBX_UNREACHABLE
    finally:
        await commands.stop()
        await first_pbx.stop()
        await second_pbx.stop()
        await bridge.stop()
        await remote.close()
        await cti_runtime.close()
        stop.set()
        await first_task
        await second_task
        await first_runtime.close()  # type: ignore[attr-defined]
        await second_runtime.close()  # type: ignore[attr-defined]
        await center.stop()
