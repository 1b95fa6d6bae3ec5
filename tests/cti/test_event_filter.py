"""The AMI event filter: the bridge asks the PBX for the events it tracks only, and tracks exactly as before."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from crm_core.calls.events import CallsResynced
from cti_bridge import commands
from cti_bridge.normalize import OtherEvent, tracked_events_filter
from tests.cti.conftest import start_harness, trace
from tests.cti.helpers import Harness

TRACES = ["inbound_queue_answered", "inbound_abandoned", "queue_hold_moh", "transfer_attended", "transfer_blind"]


def without_clock(value: object) -> object:
    """An event as comparable data, without the clock readings (two runs never share those)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, *(without_clock(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if isinstance(value, tuple | list):
        return tuple(without_clock(v) for v in value)
    return None if isinstance(value, datetime | float) else value


def tracked(harness: Harness) -> list[object]:
    return [without_clock(e) for e in harness.bus.events]


async def replayed(name: str, **options: object) -> Harness:
    harness = await start_harness(logged_in=False, **options)
    try:
        assert await harness.pbx.replay(trace(name)) > 0
        await harness.settle()
    finally:
        await harness.bridge.stop()
        await harness.pbx.stop()
    return harness


@pytest.mark.parametrize("name", TRACES)
async def test_filtered_the_bridge_reads_far_fewer_events_and_publishes_the_same(name: str) -> None:
    everything = await replayed(name, event_filter=False)
    filtered = await replayed(name)
    assert filtered.bridge.event_filter_active and not everything.bridge.event_filter_active
    assert tracked(filtered) == tracked(everything)
    assert len(tracked(filtered)) > 5
    assert filtered.bridge.frames_processed < 0.6 * everything.bridge.frames_processed


async def test_a_pbx_that_refuses_the_filter_is_read_in_full() -> None:
    refused = await start_harness(logged_in=False)
    try:
        assert refused.bridge.event_filter_active
        refused.pbx.filter_permitted = False
        refused.pbx.drop_connections()  # the bridge logs in again and asks again
        await refused.bus.wait_for(CallsResynced, count=2)
        assert not refused.bridge.event_filter_active
        assert await refused.pbx.replay(trace("inbound_queue_answered")) > 0
        await refused.settle()
        assert refused.bus.events  # tracked all the same
    finally:
        await refused.bridge.stop()
        await refused.pbx.stop()


async def test_the_demo_pbx_evaluates_filters_as_asterisk_does() -> None:
    harness = await start_harness(logged_in=False, event_filter=False)
    connection = harness.bridge.connection
    try:
        bad = await connection.action({"Action": "Filter", "Operation": "Remove", "Filter": "Event: Hangup"})
        assert (bad["Response"], bad["Message"]) == ("Error", "Unknown operation")
        broken = await connection.action(commands.event_filter("Event: (Hangup"))
        assert broken["Message"] == "Filter did not compile.  Check the syntax of the filter given."
        ok = await connection.action(commands.event_filter(tracked_events_filter()))
        assert ok["Response"] == "Success"
        session = next(iter(harness.pbx._sessions))
        assert session.wants("Event: Hangup\r\nPrivilege: call,all\r\nChannel: PJSIP/1001-1")
        assert not session.wants("Event: HangupRequest\r\nPrivilege: call,all\r\nChannel: PJSIP/1001-1")
        assert session.wants("Event: VarSet\r\nChannel: x\r\nVariable: CRM_VIP\r\nValue: gold")
        assert session.wants("Event: VarSet\r\nChannel: x\r\nVariable: MIXMONITOR_FILENAME\r\nValue: /r.wav")
        assert not session.wants("Event: VarSet\r\nChannel: x\r\nVariable: BRIDGEPEER\r\nValue: y")
        assert session.wants("Event: Newexten\r\nChannel: x\r\nApplication: VoiceMail\r\nAppData: 1001")
        assert not session.wants("Event: Newexten\r\nChannel: x\r\nApplication: Queue\r\nAppData: support")
        # an exclude filter beside the include one: matched by the include, then dropped by the exclude
        await connection.action(commands.event_filter("!Channel: PJSIP/1001-"))
        assert not session.wants("Event: Hangup\r\nPrivilege: call,all\r\nChannel: PJSIP/1001-1")
        assert session.wants("Event: Hangup\r\nPrivilege: call,all\r\nChannel: PJSIP/1002-1")
    finally:
        await harness.bridge.stop()
        await harness.pbx.stop()


async def test_user_events_from_the_dialplan_pass_the_filter() -> None:
    """UserEvents are how a dialplan tells integrations something (see AsteriskAdapter.on_pbx_event)."""
    harness = await start_harness(logged_in=False)
    try:
        assert harness.bridge.event_filter_active
        answer = await harness.bridge.connection.action(
            {"Action": "UserEvent", "UserEvent": "SurveyDone", "Score": "5"}
        )
        assert (answer["Response"], answer["Message"]) == ("Success", "Event Sent")
        await harness.settle()
        seen = [e for e in harness.pbx_events if isinstance(e, OtherEvent) and e.name == "UserEvent"]
        assert [e.headers.get("Score") for e in seen if e.headers["UserEvent"] == "SurveyDone"] == ["5"]
        nameless = await harness.bridge.connection.action({"Action": "UserEvent"})
        assert nameless["Response"] == "Error"
    finally:
        await harness.bridge.stop()
        await harness.pbx.stop()
