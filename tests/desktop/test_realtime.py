"""Pops, call states and the wallboard over real Socket.IO connections to the served app, calls from the demo PBX."""

from __future__ import annotations

import asyncio

import pytest

from tests.desktop.live import LiveCenter, wait_event


async def test_the_ringing_agent_gets_the_pop_and_no_one_else_does(center: LiveCenter) -> None:
    agent = await center.socket("agent1001", "/agent")
    colleague = await center.socket("agent2001", "/agent")  # another queue: never rung
    try:
        linkedid = await center.pbx.place_inbound_call(
            "+15551230001",
            "Alice Example",
            "support",
            answer_after_s=2,
            talk_s=2,
            agent="1001",
            crm_vars={"CRM_PATH": "menu>2", "CRM_LANGUAGE": "en"},
        )
        pop = await wait_event(agent, "pop", lambda p: p["linkedid"] == linkedid)
        assert pop["customer"]["name"] == "Alice Example" and pop["customer"]["vip_tier"] == "gold"
        assert [t["subject"] for t in pop["customer"]["open_tickets"]] == ["Router keeps rebooting"]
        assert {i["name"]: i["value"] for i in pop["ivr"]} == {"CRM_PATH": "menu>2", "CRM_LANGUAGE": "en"}
        assert pop["queue"] == "support" and pop["number"] == "+15551230001"
        up = await wait_event(agent, "call_state", lambda s: s["linkedid"] == linkedid and s["state"] == "up")
        assert up["agent"] == "1001"
        ended = await wait_event(agent, "call_state", lambda s: s["linkedid"] == linkedid and s["state"] == "ended")
        assert ended["outcome"] == "answered" and ended["wrapup_seconds"] == 30
        assert not [e for e, d in colleague.received if e == "pop"]  # type: ignore[attr-defined]
    finally:
        await agent.disconnect()
        await colleague.disconnect()


async def test_reconnecting_browser_gets_the_ringing_call_again(center: LiveCenter) -> None:
    linkedid = await center.pbx.place_inbound_call(
        "+15551230002", "Bob Example", "support", answer_after_s=200, talk_s=5, agent="1002"
    )
    first = await center.socket("agent1002", "/agent")
    await wait_event(first, "pop", lambda p: p["linkedid"] == linkedid)
    await first.disconnect()
    again = await center.socket("agent1002", "/agent")  # a reload, or a network blip
    try:
        pop = await wait_event(again, "pop", lambda p: p["linkedid"] == linkedid)
        assert pop["resent"] and pop["customer"]["name"] == "Bob Example"
        state = await wait_event(again, "call_state", lambda s: s["linkedid"] == linkedid)
        assert state["state"] == "ringing"
    finally:
        await again.disconnect()


async def test_wrap_up_over_the_socket_saves_the_disposition(center: LiveCenter) -> None:
    agent = await center.socket("agent1001", "/agent")
    try:
        linkedid = await center.pbx.place_inbound_call(
            "+15551230001", "Alice Example", "support", answer_after_s=1, talk_s=1, agent="1001"
        )
        await wait_event(agent, "call_state", lambda s: s["linkedid"] == linkedid and s["state"] == "ended")
        refused = await agent.call("wrap_up", {"linkedid": linkedid, "disposition": "nonsense"}, namespace="/agent")
        assert refused["ok"] is False and "disposition" in refused["error"]
        result = await agent.call(
            "wrap_up", {"linkedid": linkedid, "disposition": "resolved", "notes": "Fixed"}, namespace="/agent"
        )
        assert result["ok"] is True
        state = await wait_event(
            agent, "agent_state", lambda s: s["state"] == "available" and s.get("linkedid") is None
        )
        assert state["agent"] == "1001"  # the wrap-up ended early: the agent takes calls again
    finally:
        await agent.disconnect()


async def test_supervisor_sees_queue_counters_change(center: LiveCenter) -> None:
    supervisor = await center.socket("boss", "/supervisor")
    try:
        snapshot = await wait_event(supervisor, "snapshot")
        assert {q["queue"] for q in snapshot["queues"]} == {"support", "sales"}
        linkedid = await center.pbx.place_inbound_call(
            "+15551230002", "Bob Example", "sales", answer_after_s=1, talk_s=1
        )
        waiting = await wait_event(supervisor, "queue_stats", lambda q: q["queue"] == "sales" and q["waiting"] == 1)
        assert waiting["answered"] == 0
        answered = await wait_event(supervisor, "queue_stats", lambda q: q["queue"] == "sales" and q["answered"] == 1)
        assert answered["waiting"] == 0 and answered["service_level_pct"] == 100.0
        await wait_event(supervisor, "call_ended", lambda c: c["linkedid"] == linkedid)
    finally:
        await supervisor.disconnect()


@pytest.mark.parametrize(
    ("user", "namespace"),
    [(None, "/agent"), (None, "/supervisor"), ("mkt", "/agent"), ("agent1001", "/supervisor"), ("root", "/agent")],
)
async def test_connections_without_the_right_session_are_refused(
    center: LiveCenter, user: str | None, namespace: str
) -> None:
    import socketio

    with pytest.raises(socketio.exceptions.ConnectionError):
        await center.socket(user, namespace)


async def test_a_forged_session_cookie_is_refused(center: LiveCenter) -> None:
    import socketio

    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            center.base_url,
            headers={"Cookie": "crm_session=eyJyb2xlIjoiYWRtaW4ifQ.forged.sig"},
            namespaces=["/agent"],
            transports=["websocket"],
            wait_timeout=5,
        )
    await asyncio.sleep(0)
