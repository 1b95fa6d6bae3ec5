"""The generic CTI adapter end to end: recorded sequences of Zammad-style push events (tests/fixtures/generic_cti)
posted over real HTTP to the served app, agents and a supervisor on real Socket.IO connections, the call logs in
the database; beside the Asterisk (demo) PBX, which keeps working. The dial gateway is a fake HTTP server."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from crm_core.calls.events import (
    AgentRinging,
    AgentState,
    AgentStateChanged,
    CallAnswered,
    CallDirection,
    CallEnded,
    CallOffered,
    CallOutcome,
    CallStarted,
    QueueStatsChanged,
)
from crm_core.calls.models import CallLog
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.errors import SettingsError
from crm_core.settings import load_settings
from crm_core.users.service import SYSTEM
from cti_bridge.generic import (
    CtiEventKind,
    GenericCtiAdapter,
    GenericCtiError,
    GenericPbxConfig,
    NumberPlan,
    linkedid_for,
    parse_event,
)
from tests.desktop.live import LiveCenter, start_center, wait_event
from tests.desktop.test_authorization import signed_in_as

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "generic_cti"
TOKEN = "tapi-token-0123456789abcdefghij"
PBX = "tapi"


class FakeDialGateway:
    """A TAPI gateway's dial endpoint: records what the CRM asks it to dial; answers 200, or 503 on demand."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.status = 200
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/dial", self._dial)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _dial(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, dict(request.query)))
        return web.Response(status=self.status, text="queued")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def gateway() -> AsyncIterator[FakeDialGateway]:
    fake = FakeDialGateway()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def generic_pbx_settings(gateway_port: int) -> list[dict[str, Any]]:
    return [
        {
            "name": PBX,
            "token": TOKEN,
            "region": "DE",
            "outside_prefix": "0",
            "dial_url": f"http://127.0.0.1:{gateway_port}/dial?ext={{agent}}&to={{number}}",
            "blocked_callers": ["+49 30 5550 0099"],
            "outbound_caller_id": "+493055571642",
        }
    ]


async def start_generic_center(tmp_path: Path, gateway: FakeDialGateway) -> LiveCenter:
    """A live center with the generic PBX `tapi` beside the demo Asterisk, and a German customer."""
    live = await start_center(tmp_path, generic_pbxes=generic_pbx_settings(gateway.port))
    async with live.runtime.unit_of_work() as session:
        erika = await create_customer(
            session=session,
            actor=SYSTEM,
            region="DE",
            data=CustomerIn(name="Erika Mustermann", phones=[PhoneIn(number="+493055571600")]),
        )
        live.customers["Erika Mustermann"] = erika.id
    return live


@pytest.fixture
async def center(tmp_path: Path, gateway: FakeDialGateway) -> AsyncIterator[LiveCenter]:
    live = await start_generic_center(tmp_path, gateway)
    try:
        # the admin maps the PBX's user names to CRM users, through the admin screen's own requests
        http, token = await signed_in_as(live, "root")
        try:
            page = await (await http.get(f"{live.base_url}/admin/pbx")).text()
            ids = dict(re.findall(r'<option value="([0-9a-f]{32})">(agent\d+) \(', page))
            by_name = {name: user_id for user_id, name in ids.items()}
            for pbx_user, username in (("Emma Taylor", "agent1001"), ("Chris Miller", "agent1002")):
                async with http.post(
                    f"{live.base_url}/admin/pbx/mappings",
                    data={"pbx": PBX, "pbx_user": pbx_user, "user_id": by_name[username]},
                    headers={"X-CSRF-Token": token, "HX-Request": "true"},
                ) as response:
                    assert response.status == 200, await response.text()
        finally:
            await http.close()
        yield live
    finally:
        await live.stop()


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


async def post(center: LiveCenter, body: dict[str, Any], *, encoding: str, token: str = TOKEN) -> tuple[int, Any]:
    url = f"{center.base_url}/api/cti/{PBX}/{token}"
    async with aiohttp.ClientSession() as http:
        if encoding == "json":
            request = http.post(url, json=body)
        else:
            form = aiohttp.FormData()
            for key, value in body.items():
                for item in value if isinstance(value, list) else [value]:
                    form.add_field(key, item)
            request = http.post(url, data=form)
        async with request as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None


async def replay(center: LiveCenter, name: str) -> None:
    """Post a recorded sequence; every reply is the one recorded with it."""
    sequence = recorded(name)
    for step in sequence["steps"]:
        status, reply = await post(center, step["body"], encoding=sequence["encoding"])
        assert (status, reply) == (step["status"], step["reply"]), step["body"]


async def call_log(center: LiveCenter, call_id: str) -> CallLog:
    assert center.writer is not None
    await center.writer.drain()
    async with center.runtime.sessions() as session:
        logs = list(
            await session.scalars(
                select(CallLog)
                .options(selectinload(CallLog.legs))
                .where(CallLog.linkedid == linkedid_for(PBX, call_id))
            )
        )
    assert len(logs) == 1
    return logs[0]


async def agents(center: LiveCenter, usernames: tuple[str, ...]) -> list[Any]:
    return [await center.socket(username, "/agent") for username in usernames]


def events(client: Any, name: str, linkedid: str | None = None) -> list[dict[str, Any]]:
    return [d for e, d in client.received if e == name and (linkedid is None or d.get("linkedid") == linkedid)]


# --- the recorded sequences --------------------------------------------------------------------------------------


async def test_inbound_answered_pops_the_named_agent_logs_the_call_and_counts_it(center: LiveCenter) -> None:
    emma, chris, sales = await agents(center, ("agent1001", "agent1002", "agent2001"))
    boss = await center.socket("boss", "/supervisor")
    linkedid = linkedid_for(PBX, "c0ffee-0001")
    try:
        await replay(center, "inbound_answered")
        pop = await wait_event(emma, "pop", lambda p: p["linkedid"] == linkedid)
        # the number as a person wrote it (+49 30/555-71600) is the customer's E.164 number
        assert pop["number"] == "+493055571600" and pop["customer"]["name"] == "Erika Mustermann"
        assert pop["queue"] == "support"
        assert pop["commands"] == ["dial"]  # this PBX cannot hold, transfer or hang up: no such controls
        up = await wait_event(emma, "call_state", lambda s: s["linkedid"] == linkedid and s["state"] == "up")
        assert up["agent"] == "1001"
        ended = await wait_event(emma, "call_state", lambda s: s["linkedid"] == linkedid and s["state"] == "ended")
        assert ended["outcome"] == "answered"
        stats = await wait_event(
            boss, "queue_stats", lambda q: q["queue"] == "support" and q["answered"] == 1 and q["waiting"] == 0
        )
        assert (stats["abandoned"], stats["service_level_pct"], stats["logged_in"]) == (0, 100.0, 2)
        log = await call_log(center, "c0ffee-0001")
        assert (log.direction, log.outcome, log.agent, log.queue) == ("inbound", "answered", "1001", "support")
        assert log.customer_id == center.customers["Erika Mustermann"] and log.caller_number == "+493055571600"
        assert [(leg.agent, leg.answered_at is not None) for leg in log.legs] == [("1001", True)]
        # only the named user was rung: the other support agent and the sales agent got nothing
        assert events(chris, "pop") == [] and events(sales, "pop") == []
    finally:
        for client in (emma, chris, sales, boss):
            await client.disconnect()


async def test_inbound_missed_rings_both_named_and_ends_abandoned(center: LiveCenter) -> None:
    emma, chris, sales = await agents(center, ("agent1001", "agent1002", "agent2001"))
    boss = await center.socket("boss", "/supervisor")
    linkedid = linkedid_for(PBX, "c0ffee-0002")
    try:
        await replay(center, "inbound_missed")
        for agent in (emma, chris):
            pop = await wait_event(agent, "pop", lambda p: p["linkedid"] == linkedid)
            assert pop["customer"]["name"] == "Erika Mustermann"  # national form with the trunk prefix: 030 …
            ended = await wait_event(agent, "call_state", lambda s: s["linkedid"] == linkedid and s["state"] == "ended")
            assert ended["outcome"] == "abandoned" and ended["agent"] is None
        stats = await wait_event(boss, "queue_stats", lambda q: q["queue"] == "support" and q["abandoned"] == 1)
        assert (stats["waiting"], stats["answered"], stats["service_level_pct"]) == (0, 0, 0.0)
        log = await call_log(center, "c0ffee-0002")
        assert (log.outcome, log.agent, log.answered_at) == ("abandoned", None, None)
        assert sorted(leg.agent for leg in log.legs) == ["1001", "1002"]
        assert all(leg.answered_at is None for leg in log.legs)
        assert events(sales, "pop") == []
    finally:
        for client in (emma, chris, sales, boss):
            await client.disconnect()


async def test_outbound_pops_the_calling_agent_and_sets_the_caller_id(center: LiveCenter) -> None:
    emma = await center.socket("agent1001", "/agent")
    linkedid = linkedid_for(PBX, "c0ffee-0003")
    try:
        await replay(center, "outbound")
        pop = await wait_event(emma, "pop", lambda p: p["linkedid"] == linkedid)
        # dialled with the outside-line prefix 0 before the national number: still the customer
        assert pop["direction"] == "outbound" and pop["number"] == "+493055571600"
        assert pop["customer"]["name"] == "Erika Mustermann"
        up = await wait_event(emma, "call_state", lambda s: s["linkedid"] == linkedid and s["state"] == "up")
        assert up["agent"] == "1001"  # the far end answered
        log = await call_log(center, "c0ffee-0003")
        assert (log.direction, log.outcome, log.agent) == ("outbound", "answered", "1001")
        assert log.customer_id == center.customers["Erika Mustermann"]
    finally:
        await emma.disconnect()


async def test_group_call_to_two_users_answered_by_the_second(center: LiveCenter) -> None:
    emma, chris = await agents(center, ("agent1001", "agent1002"))
    linkedid = linkedid_for(PBX, "c0ffee-0004")
    try:
        await replay(center, "group_call")
        for agent in (emma, chris):
            pop = await wait_event(agent, "pop", lambda p: p["linkedid"] == linkedid)
            assert pop["number"] == "+493055571600" and pop["queue"] is None
        taken = await wait_event(emma, "call_state", lambda s: s["linkedid"] == linkedid and s["state"] == "up")
        assert taken["agent"] == "1002"  # Emma's desktop shows it answered elsewhere
        log = await call_log(center, "c0ffee-0004")
        assert (log.outcome, log.agent, log.queue) == ("answered", "1002", None)
        assert {leg.agent: leg.answered_at is not None for leg in log.legs} == {"1001": False, "1002": True}
        states = [s["state"] for s in events(emma, "agent_state") if s.get("agent") == "1001"]
        assert states[-1] == "available"
    finally:
        for client in (emma, chris):
            await client.disconnect()


async def test_repeated_and_out_of_order_events_make_one_call_log_and_no_stuck_pop(center: LiveCenter) -> None:
    emma = await center.socket("agent1001", "/agent")
    boss = await center.socket("boss", "/supervisor")
    linkedid = linkedid_for(PBX, "c0ffee-0005")
    try:
        await replay(center, "repeats_out_of_order")
        ended = await wait_event(emma, "call_state", lambda s: s["linkedid"] == linkedid and s["state"] == "ended")
        assert ended["outcome"] == "abandoned"
        assert len(events(emma, "pop", linkedid)) == 1  # the repeated newCall did not pop again
        assert [s["state"] for s in events(emma, "call_state", linkedid)] == ["ended"]  # the late answer: nothing
        log = await call_log(center, "c0ffee-0005")
        assert (log.outcome, log.answered_at) == ("abandoned", None)
        stats = await wait_event(boss, "queue_stats", lambda q: q["queue"] == "support" and q["abandoned"] == 1)
        assert (stats["waiting"], stats["answered"]) == (0, 0)
        # nothing rings any more: a reconnecting desktop gets no pop back
        await emma.disconnect()
        emma = await center.socket("agent1001", "/agent")
        await wait_event(emma, "capabilities")
        assert events(emma, "pop") == []
        assert center.pbxes is not None and center.pbxes.generic[PBX].tracker.calls == {}
    finally:
        await emma.disconnect()
        await boss.disconnect()


async def test_a_blocked_caller_is_rejected_and_rings_nobody(center: LiveCenter) -> None:
    emma = await center.socket("agent1001", "/agent")
    try:
        await replay(center, "blocked_caller")
        log = await call_log(center, "c0ffee-0006")
        assert (log.outcome, log.caller_number, log.legs) == ("missed", "+493055500099", [])
        assert events(emma, "pop") == []
    finally:
        await emma.disconnect()


# --- refusals ----------------------------------------------------------------------------------------------------


async def test_a_wrong_token_or_pbx_is_403_without_detail(center: LiveCenter) -> None:
    body = recorded("inbound_answered")["steps"][0]["body"]
    wrong = await post(center, body, encoding="form", token=TOKEN[:-1] + "X")
    assert wrong == (403, {"code": "forbidden"})
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{center.base_url}/api/cti/nope/{TOKEN}", json={"event": "newCall"}) as response:
            assert (response.status, await response.json()) == (403, {"code": "forbidden"})
    assert center.pbxes is not None and center.pbxes.generic[PBX].tracker.calls == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"event": "ring", "callId": "x", "direction": "in"}, "'event' must be newCall, answer or hangup."),
        ({"event": "newCall", "direction": "in"}, "'callId' is missing."),
        ({"event": "newCall", "callId": "x", "direction": "sideways"}, "'direction' must be in or out."),
        ({"event": "newCall", "callId": "x"}, "'direction' is missing."),
        ({"event": "newCall", "callId": "x" * 251, "direction": "in"}, "'callId' is longer than 250 chars."),
        ({"event": "newCall", "callId": "x", "direction": "in", "user": [1]}, "Each 'user' must be text."),
        ({"event": "newCall", "callId": "x", "direction": "in", "from": "1" * 41}, "'from' is longer than 40 chars."),
    ],
)
async def test_a_malformed_event_is_400_with_a_clear_message(
    center: LiveCenter, body: dict[str, Any], message: str
) -> None:
    status, reply = await post(center, body, encoding="json")
    assert status == 400 and reply["code"] == "invalid_event" and reply["message"] == message
    assert center.pbxes is not None and center.pbxes.generic[PBX].tracker.calls == {}


async def test_a_body_that_is_not_an_event_is_400(center: LiveCenter) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{center.base_url}/api/cti/{PBX}/{TOKEN}"
        async with http.post(url, data=b"[1, 2]", headers={"Content-Type": "application/json"}) as response:
            assert response.status == 400 and (await response.json())["message"] == "Send a JSON object."
        async with http.post(url, data=b"event=newCall", headers={"Content-Type": "text/plain"}) as response:
            assert response.status == 400 and "form data or as a JSON object" in (await response.json())["message"]
        async with http.post(url, data={"event": "newCall", "callId": "a\x01b", "direction": "in"}) as response:
            assert response.status == 400  # a control character is refused before anything is stored


# --- commands ----------------------------------------------------------------------------------------------------


async def test_click_to_dial_goes_to_the_gateway_and_other_commands_are_not_supported(
    center: LiveCenter, gateway: FakeDialGateway
) -> None:
    emma = await center.socket("agent1001", "/agent")
    linkedid = linkedid_for(PBX, "c0ffee-0001")
    try:
        ack = await emma.call("dial", {"number": "+49 30 5557 1600"}, namespace="/agent", timeout=5)
        assert ack == {"ok": True}
        assert gateway.requests == [("POST", {"ext": "1001", "to": "+493055571600"})]
        gateway.status = 503
        refused = await emma.call("dial", {"number": "030 5557 1600"}, namespace="/agent", timeout=5)
        assert refused["ok"] is False and refused["code"] == "rejected" and "503" in refused["error"]
        await post(center, recorded("inbound_answered")["steps"][0]["body"], encoding="form")
        await post(center, recorded("inbound_answered")["steps"][1]["body"], encoding="form")
        await wait_event(emma, "call_state", lambda s: s["linkedid"] == linkedid and s["state"] == "up")
        for event, data in (
            ("hold", {"linkedid": linkedid}),
            ("transfer", {"linkedid": linkedid, "target": "1002"}),
            ("hangup", {"linkedid": linkedid}),
        ):
            ack = await emma.call(event, data, namespace="/agent", timeout=5)
            assert ack["ok"] is False and ack["code"] == "not_supported", (event, ack)
        # the Asterisk calls and commands of the other agents are untouched: the demo PBX's agent is not on tapi
        assert center.pbxes is not None and center.pbxes.homes == {"1001": PBX, "1002": PBX}
    finally:
        await emma.disconnect()


async def test_unmapped_names_ring_nobody_and_no_names_ring_the_queue(center: LiveCenter) -> None:
    emma, chris, sales = await agents(center, ("agent1001", "agent1002", "agent2001"))
    try:
        status, _ = await post(
            center,
            {"event": "newCall", "from": "0301111111", "to": "1", "direction": "in", "callId": "u1", "user": "Nobody"},
            encoding="json",
        )
        assert status == 200
        status, _ = await post(
            center,
            {"event": "newCall", "from": "0301111111", "to": "1", "direction": "in", "callId": "u2", "queue": "sales"},
            encoding="json",
        )
        assert status == 200
        pop = await wait_event(sales, "pop", lambda p: p["linkedid"] == linkedid_for(PBX, "u2"))
        assert pop["queue"] == "sales"
        assert events(emma, "pop") == [] and events(chris, "pop") == []
        assert [p["linkedid"] for p in events(sales, "pop")] == [linkedid_for(PBX, "u2")]
    finally:
        for client in (emma, chris, sales):
            await client.disconnect()


# --- pure parts ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "+49 30/555-71600",
        "+49 (30) 555 71 600",
        "030 55571600",
        "030/555-71600",
        "493055571600",
        "0049 30 55571600",
        "0030 55571600",
    ],
)
def test_numbers_in_any_written_form_are_one_e164(written: str) -> None:
    assert NumberPlan(region="DE", outside_prefix="0").to_e164(written) == "+493055571600"


def test_withheld_and_internal_numbers_are_no_customer() -> None:
    plan = NumberPlan(region="DE", outside_prefix="0")
    assert [plan.to_e164(n) for n in ("anonymous", "", "1001", "sip:bob")] == [None, None, None, None]


def test_form_and_json_users_parse_alike() -> None:
    form = parse_event({"event": ["newCall"], "callId": ["1"], "direction": ["in"], "user[]": ["A", "B"]})
    as_json = parse_event({"event": "newCall", "callId": "1", "direction": "in", "user": ["A", "B"]})
    single = parse_event({"event": "newCall", "callId": "1", "direction": "in", "user": "A"})
    assert form == as_json and form.users == ("A", "B") and single.users == ("A",)
    assert form.kind is CtiEventKind.NEW_CALL


def test_a_long_call_id_still_fits_a_call_log() -> None:
    linkedid = linkedid_for(PBX, "x" * 250)
    assert len(linkedid) <= 64 and linkedid.startswith(f"{PBX}:") and linkedid != linkedid_for(PBX, "y" * 250)


# --- the domain events, as the Asterisk traces are checked (tests/cti/test_traces.py) --------------------------


class RecordingBus:
    def __init__(self) -> None:
        self.events: list[object] = []

    def subscribe(self, event_type: Any, handler: Any) -> None:
        raise AssertionError("the adapter subscribes to nothing")

    async def publish(self, domain_event: object) -> None:
        self.events.append(domain_event)

    def of(self, kind: type[Any], **fields: Any) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and all(getattr(e, k) == v for k, v in fields.items())]


async def push_recorded(adapter: GenericCtiAdapter, name: str, mapping: dict[str, str]) -> None:
    for step in recorded(name)["steps"]:
        if step["status"] != 200:
            continue
        event = parse_event(step["body"])
        names = [*((event.answering_number,) if event.answering_number else ()), *event.users]
        agents = tuple(dict.fromkeys(mapping[n] for n in names if n in mapping))
        answer = await adapter.push(event, agents, queue_members=("1001", "1002") if event.queue else None)
        assert answer.body == step["reply"]


async def test_the_domain_events_of_an_answered_call_are_those_of_the_asterisk_path() -> None:
    bus = RecordingBus()
    config = GenericPbxConfig(name=PBX, numbers=NumberPlan(region="DE", outside_prefix="0"))
    adapter = GenericCtiAdapter(config, bus)
    await push_recorded(adapter, "inbound_answered", {"Emma Taylor": "1001", "1001": "1001"})
    linkedid = linkedid_for(PBX, "c0ffee-0001")
    [started] = bus.of(CallStarted)
    assert (started.linkedid, started.number, started.direction) == (linkedid, "+493055571600", CallDirection.INBOUND)
    [offered] = bus.of(CallOffered)
    assert (offered.caller_number, offered.queue) == ("+493055571600", "support")
    assert offered.callee_number == "030 1234 5670"  # our line, as the PBX wrote it
    [pop] = bus.of(AgentRinging)
    assert (pop.agent, pop.linkedid, pop.caller_number, pop.queue) == ("1001", linkedid, "+493055571600", "support")
    [answered] = bus.of(CallAnswered)
    assert answered.agent == "1001" and answered.queue == "support"
    [ended] = bus.of(CallEnded)
    assert ended.outcome is CallOutcome.ANSWERED and ended.agent == "1001" and ended.hangup_cause == 16
    assert [(leg.agent, leg.answered_at is not None) for leg in ended.legs] == [("1001", True)]
    states = [e.state for e in bus.of(AgentStateChanged, agent="1001")]
    assert states == [AgentState.RINGING, AgentState.ON_CALL, AgentState.AVAILABLE]
    final = bus.of(QueueStatsChanged, queue="support")[-1]
    assert (final.waiting, final.answered, final.abandoned, final.service_level_pct) == (0, 1, 0, 100.0)
    assert (final.logged_in, final.available) == (2, 2)
    # every event published is one of these: nothing else reaches the bus
    kinds = {type(e) for e in bus.events}
    assert kinds == {
        CallStarted,
        CallOffered,
        AgentRinging,
        CallAnswered,
        CallEnded,
        AgentStateChanged,
        QueueStatsChanged,
    }


async def test_repeats_and_late_events_publish_nothing_more() -> None:
    bus = RecordingBus()
    adapter = GenericCtiAdapter(GenericPbxConfig(name=PBX, numbers=NumberPlan(region="DE")), bus)
    await push_recorded(adapter, "repeats_out_of_order", {"Emma Taylor": "1001"})
    assert len(bus.of(CallStarted)) == 1 and len(bus.of(AgentRinging)) == 1 and len(bus.of(CallEnded)) == 1
    assert not bus.of(CallAnswered)
    [ended] = bus.of(CallEnded)
    assert ended.outcome is CallOutcome.ABANDONED and ended.agent is None
    assert [e.state for e in bus.of(AgentStateChanged, agent="1001")] == [AgentState.RINGING, AgentState.AVAILABLE]
    with pytest.raises(GenericCtiError) as unknown:
        await adapter.push(parse_event({"event": "hangup", "callId": "nope"}), ())
    assert unknown.value.code.value == "unknown_call" and unknown.value.http_status == 404
    assert adapter.tracker.calls == {}


def test_generic_pbx_settings_are_checked_and_their_secrets_never_printed() -> None:
    good = {"name": "tapi", "token": TOKEN, "dial_url": "https://user:pw@gateway/dial?n={number}"}
    settings = load_settings({"CRM_GENERIC_PBXES": json.dumps([good])})
    [pbx] = settings.generic_pbxes
    assert pbx.token.get_secret_value() == TOKEN and TOKEN not in repr(settings) and "pw@" not in repr(settings)
    for bad, fragment in (
        ("[{", "not a JSON list"),
        (json.dumps([{**good, "token": "short"}]), "at least 24"),
        (json.dumps([{**good, "name": "Bad Name"}]), "CRM_GENERIC_PBXES"),
        (json.dumps([good, good]), "same name"),
        (json.dumps([{**good, "region": "XX"}]), "not a region"),
        (json.dumps([{**good, "dial_url": "ftp://x"}]), "http"),
    ):
        with pytest.raises(SettingsError) as refused:
            load_settings({"CRM_GENERIC_PBXES": bad})
        assert fragment in refused.value.message and TOKEN not in refused.value.message
