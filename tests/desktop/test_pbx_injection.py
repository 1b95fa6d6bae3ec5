"""No Socket.IO event can make the PBX do more than the one action it stands for, whatever its fields hold.

Every event of /agent and /supervisor, every field of it, with carriage returns, line feeds, NUL, a smuggled
`Action: QueueRemove` and 10,000 characters, sent over real Socket.IO to the served app whose bridge is logged in to
the demo PBX over TCP. The demo PBX reads actions as Asterisk does and keeps every header line it received, so a
header or an action that got through would show there. One live center serves the whole module.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
import socketio

from agent_desktop.sockets import AGENT_EVENTS, SUPERVISOR_EVENTS
from cti_bridge.ami import MAX_VALUE_CHARS
from tests.desktop.live import LiveCenter, start_center

SMUGGLED = "\r\n\r\nAction: QueueRemove\r\nQueue: support\r\nInterface: Local/1002@agents"
NO_SUCH_CALL = "1795462442.0"
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# the headers each action the desktop may cause carries (cti_bridge.commands); anything else was smuggled in
HEADERS_OF = {
    "Originate": {"Channel", "Context", "Exten", "Priority", "Timeout", "Async", "CallerID", "Application", "Data"},
    "Hangup": {"Channel", "Cause"},
    "BlindTransfer": {"Channel", "Exten", "Context"},
    "Atxfer": {"Channel", "Exten", "Context"},
    "QueueAdd": {"Queue", "Interface", "StateInterface", "MemberName", "Penalty"},
    "QueueRemove": {"Queue", "Interface"},
    "QueuePause": {"Interface", "Paused", "Reason", "Queue"},
}


@dataclass(frozen=True)
class Event:
    namespace: str
    name: str
    payload: dict[str, str]  # a valid payload; one field at a time gets a bad value
    intended: tuple[str, ...]  # the AMI actions this event stands for, in order
    # field -> index in `intended` of the action that carries it to the PBX; fields absent here are never sent (a
    # linkedid is looked up in the tracker, a disposition goes to the database)
    carried_by: dict[str, int] = field(default_factory=dict)


EVENTS = [
    Event("/agent", "dial", {"number": "+15559870000"}, ("Originate",), {"number": 0}),
    Event("/agent", "hangup", {"linkedid": NO_SUCH_CALL}, ("Hangup",)),
    # no live call: the check that the agent is on the call refuses before the target is looked at, so the target
    # never travels here (its own check at the AMI edge: tests/cti/test_ami_boundary.py)
    Event("/agent", "transfer", {"linkedid": NO_SUCH_CALL, "target": "2001", "kind": "blind"}, ("BlindTransfer",)),
    Event("/agent", "hold", {"linkedid": NO_SUCH_CALL}, ()),
    Event("/agent", "resume", {"linkedid": NO_SUCH_CALL}, ()),
    Event("/agent", "pause", {"reason": "Lunch"}, ("QueuePause",), {"reason": 0}),
    Event("/agent", "unpause", {"reason": "Lunch", "queue": "support"}, ("QueuePause",)),  # fields it ignores
    Event("/agent", "queue_login", {"queue": "support"}, ("QueueAdd",), {"queue": 0}),
    Event("/agent", "queue_logout", {"queue": "support"}, ("QueueRemove",), {"queue": 0}),
    # a wrap-up may lift the CRM's own wrap-up pause; this call does not exist, so it lifts nothing
    Event(
        "/agent", "wrap_up", {"linkedid": NO_SUCH_CALL, "disposition": "resolved", "notes": "Fixed"}, ("QueuePause",)
    ),
    Event("/supervisor", "spy", {"agent": "1001", "mode": "listen"}, ("Originate",), {"agent": 0}),
    Event(
        "/supervisor",
        "force_pause",
        {"agent": "1001", "reason": "Coaching"},
        ("QueuePause",),
        {"agent": 0, "reason": 0},
    ),
    Event(
        "/supervisor",
        "force_login",
        {"agent": "1001", "queue": "support"},
        ("QueueAdd",),
        {"agent": 0, "queue": 0},
    ),
    Event(
        "/supervisor",
        "force_logout",
        {"agent": "1001", "queue": "support"},
        ("QueueRemove",),
        {"agent": 0, "queue": 0},
    ),
    Event(
        "/supervisor",
        "move_agent",
        {"agent": "1001", "to_queue": "sales", "from_queue": "support"},
        ("QueueAdd", "QueueRemove"),
        {"agent": 0, "to_queue": 0, "from_queue": 1},
    ),
]


def bad_values(valid: str) -> dict[str, str]:
    """The valid value spoilt: a control character inside it (the socket layer strips only the ends), an AMI
    action appended, 10,000 characters, and 10,000 characters that end in a smuggled action."""
    return {
        "cr": f"{valid[:2]}\r{valid[2:]}",
        "lf": f"{valid[:2]}\n{valid[2:]}",
        "nul": f"{valid[:2]}\x00{valid[2:]}",
        "smuggled-action": valid + SMUGGLED,
        "10000-chars": (valid + "9" * 10_000)[:10_000],
        "10000-chars-smuggling": valid + "9" * (10_000 - len(valid) - len(SMUGGLED)) + SMUGGLED,
    }


# values that reach the adapter with their control character (the socket layer cuts 10,000 characters short)
SHORT_AND_SPOILT = {"cr", "lf", "nul", "smuggled-action"}
CASES = [
    pytest.param(event, name, kind, bad, id=f"{event.name}-{name}-{kind}")
    for event in EVENTS
    for name in event.payload
    for kind, bad in bad_values(event.payload[name]).items()
]


@dataclass
class Center:
    live: LiveCenter
    clients: dict[str, socketio.AsyncClient]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def center(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Center]:
    live = await start_center(tmp_path_factory.mktemp("pbx-injection"))
    clients: dict[str, socketio.AsyncClient] = {}
    try:
        clients["/agent"] = await live.socket("agent1001", "/agent")
        clients["/supervisor"] = await live.socket("boss", "/supervisor")
        yield Center(live, clients)
    finally:
        for client in clients.values():
            await client.disconnect()
        await live.stop()


async def actions_since(live: LiveCenter, mark: int) -> list[list[tuple[str, str]]]:
    """The actions the PBX read since `mark`, each as its header lines. A Ping answered on the bridge's connection
    means the PBX has read every byte sent before it; pings (the marker, keep-alives) are left out."""
    await live.bridge.connection.action({"Action": "Ping"})
    return [lines for lines in live.pbx.action_lines_received[mark:] if ("Action", "Ping") not in lines]


def first(lines: list[tuple[str, str]], header: str) -> str:
    return next((value for name, value in lines if name.lower() == header.lower()), "")


def test_every_socket_event_is_fed() -> None:
    assert {(e.namespace, e.name) for e in EVENTS} == {("/agent", n) for n in AGENT_EVENTS} | {
        ("/supervisor", n) for n in SUPERVISOR_EVENTS
    }


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("event", "field_name", "kind", "bad"), CASES)
async def test_a_bad_value_never_reaches_the_pbx_as_more_than_the_intended_action(
    center: Center, event: Event, field_name: str, kind: str, bad: str
) -> None:
    live = center.live
    mark = len(live.pbx.action_lines_received)
    ack: dict[str, Any] = await center.clients[event.namespace].call(
        event.name, {**event.payload, field_name: bad}, namespace=event.namespace, timeout=10
    )
    received = await actions_since(live, mark)

    # nothing beyond the intended actions, in their order, each exactly as a builder makes it
    names = [first(lines, "Action") for lines in received]
    assert names == list(event.intended[: len(names)]), (ack, received)
    for lines in received:
        headers = [name for name, _ in lines]
        assert len({h.lower() for h in headers}) == len(headers), f"a repeated header reached the PBX: {lines}"
        assert set(headers) <= HEADERS_OF[first(lines, "Action")] | {"Action", "ActionID"}, lines
        for name, value in lines:
            assert not CONTROL.search(value) and len(value) <= MAX_VALUE_CHARS, (name, value[:80])
    assert "1002" in live.pbx.members["support"]  # the smuggled QueueRemove never ran

    step = event.carried_by.get(field_name)
    if step is not None and kind in SHORT_AND_SPOILT:
        # refused with one sentence, and the action that would have carried it never left the bridge
        assert ack["ok"] is False and ack["code"] == "invalid", ack
        assert ack["error"].endswith(".") and "\n" not in ack["error"] and "\r" not in ack["error"]
        assert names == list(event.intended[:step])

    if event.name == "move_agent":  # put 1001 back where it was for the next case
        mark = len(live.pbx.action_lines_received)
        await center.clients["/supervisor"].call(
            "force_logout", {"agent": "1001", "queue": "sales"}, namespace="/supervisor", timeout=10
        )
        for lines in await actions_since(live, mark):
            assert first(lines, "Action") == "QueueRemove" and first(lines, "Queue") == "sales"


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("missing", ["agent", "to_queue", "from_queue"])
async def test_a_move_with_a_missing_queue_sends_nothing(center: Center, missing: str) -> None:
    """All of a move's values are read before its first step: no agent is left in both queues."""
    payload = {"agent": "1001", "to_queue": "sales", "from_queue": "support"}
    del payload[missing]
    mark = len(center.live.pbx.action_lines_received)
    ack = await center.clients["/supervisor"].call("move_agent", payload, namespace="/supervisor", timeout=10)
    assert ack["ok"] is False and missing in ack["error"]
    assert await actions_since(center.live, mark) == []
