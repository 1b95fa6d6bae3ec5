"""The AMI boundary: no value a person typed can add a header or a second action to what the bridge sends.

The gate is `cti_bridge.ami.check_action`, which every action passes on its way out; the builders' own checks are
the first line. Over TCP the demo PBX reads actions as Asterisk does (a bare LF ends a line too) and keeps every
header line it got, so an action or a header that slipped through would show in `action_lines_received`.
"""

from __future__ import annotations

import asyncio

import pytest

from crm_core.bus import InMemoryEventBus
from cti_bridge import commands
from cti_bridge.adapter import CommandError, CommandErrorCode, SpyMode
from cti_bridge.ami import MAX_VALUE_CHARS, check_action, parse_ami_url
from cti_bridge.asterisk import AsteriskAdapter
from cti_bridge.demo_pbx import DemoPbx
from cti_bridge.normalize import tracked_events_filter
from tests.cti.helpers import SECRET, Harness

CONTROL_CHARACTERS = [chr(c) for c in range(0x20)] + ["\x7f", "\x85", "\u2028"]
INJECTION = "Lunch\r\n\r\nAction: QueueRemove\r\nQueue: support\r\nInterface: Local/1002@agents"


def pause_action(reason: str) -> dict[str, str]:
    return {"Action": "QueuePause", "Interface": "Local/1001@agents", "Paused": "true", "Reason": reason}


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
def test_the_gate_refuses_every_control_character_and_names_the_field(character: str) -> None:
    with pytest.raises(CommandError) as caught:
        check_action(pause_action(f"Lun{character}ch"))
    assert caught.value.code is CommandErrorCode.INVALID
    assert caught.value.detail == "The pause reason may not contain line breaks or other control characters."


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("Exten", "number or extension"),
        ("CallerID", "caller ID"),
        ("Variable", "channel variable"),
        ("Queue", "queue name"),
        ("Interface", "agent interface"),
        ("Channel", "channel"),
        ("Context", "dialplan context"),
        ("ActionID", "action ID"),
        ("Filter", "event filter"),
        ("Data", "application data"),
        ("Account", "Account value"),  # a header the gate has no words for is still checked
    ],
)
def test_the_gate_checks_every_header(header: str, words: str) -> None:
    for bad in ("a\rb", "a\nb", "a\x00b", INJECTION):
        with pytest.raises(CommandError) as caught:
            check_action({"Action": "Originate", header: bad})
        assert caught.value.code is CommandErrorCode.INVALID and f"The {words} may not" in caught.value.detail


def test_the_gate_checks_each_value_of_a_repeated_header() -> None:
    check_action({"Action": "Originate", "Variable": ["CRM_A=1", "CRM_B=2"]})
    with pytest.raises(CommandError) as caught:
        check_action({"Action": "Originate", "Variable": ["CRM_A=1", "CRM_B=2\r\nAction: Command"]})
    assert caught.value.code is CommandErrorCode.INVALID and "channel variable" in caught.value.detail


def test_the_gate_bounds_lengths() -> None:
    check_action(pause_action("x" * MAX_VALUE_CHARS))
    with pytest.raises(CommandError) as caught:
        check_action(pause_action("x" * (MAX_VALUE_CHARS + 1)))
    assert caught.value.detail == f"The pause reason is too long (at most {MAX_VALUE_CHARS} characters)."
    with pytest.raises(CommandError):
        check_action(pause_action("x" * 10_000))
    check_action(commands.event_filter(tracked_events_filter()))  # the bridge's own filter is long, and passes


@pytest.mark.parametrize("name", ["Reason: x\r\nAction", "Reason:", "", "Re ason", "Reason\x00", "9Reason"])
def test_the_gate_refuses_header_names_that_are_not_plain_words(name: str) -> None:
    with pytest.raises(CommandError) as caught:
        check_action({"Action": "QueuePause", name: "x"})
    assert caught.value.code is CommandErrorCode.INVALID and "is not an AMI header name" in caught.value.detail


def test_every_builder_output_passes_the_gate() -> None:
    for fields in (
        commands.originate_dial("1001", "+1 (555) 987-0000", "Alice <+15551230001>"),
        commands.queue_add("1001", "support"),
        commands.queue_remove("1001", "support"),
        commands.queue_pause("1001", True, "Lunch break", "support"),
        commands.spy("9001", "1001", SpyMode.BARGE),
        commands.blind_transfer("Local/1001@agents-00000001;1", "2001"),
    ):
        check_action(fields)


@pytest.mark.parametrize(
    "build",
    [
        lambda bad: commands.queue_pause("1001", True, bad, None),
        lambda bad: commands.queue_pause("1001", True, "Lunch", bad),
        lambda bad: commands.queue_pause(bad, True, "Lunch", None),
        lambda bad: commands.originate_dial("1001", "+15559870000", bad),
        lambda bad: commands.originate_dial("1001", bad, None),
        lambda bad: commands.originate_dial(bad, "+15559870000", None),
        lambda bad: commands.queue_add("1001", bad),
        lambda bad: commands.queue_remove(bad, "support"),
        lambda bad: commands.spy("9001", bad, SpyMode.LISTEN),
        lambda bad: commands.spy(bad, "1001", SpyMode.LISTEN),
    ],
    ids=[
        "pause-reason",
        "pause-queue",
        "pause-agent",
        "dial-caller-id",
        "dial-number",
        "dial-agent",
        "queue-add-queue",
        "queue-remove-agent",
        "spy-agent",
        "spy-supervisor",
    ],
)
@pytest.mark.parametrize("where", ["end", "middle"])
def test_builders_refuse_line_breaks_in_their_values(build: object, where: str) -> None:
    # a trailing newline too: `$` in a regex matches before it, so "1001\n" once passed as an extension
    valid = {"end": "1001{}", "middle": "10{}01"}[where]
    for character in ("\n", "\r", "\x00", "\r\n\r\nAction: QueueRemove"):
        with pytest.raises(CommandError) as caught:
            build(valid.format(character))  # type: ignore[operator]
        assert caught.value.code is CommandErrorCode.INVALID


def test_a_number_with_a_line_break_is_refused_not_cleaned() -> None:
    assert commands.check_number("+1 (555) 987-0000") == "+15559870000"
    for number in ("+1555\n9870000", "+1555\t9870000", "+15559870000\n"):
        with pytest.raises(CommandError):
            commands.check_number(number)


def test_a_refused_value_is_quoted_short_in_the_error() -> None:
    with pytest.raises(CommandError) as caught:
        commands.check_queue("q" * 10_000)
    assert len(caught.value.detail) < 80


async def flushed(harness: Harness) -> list[list[tuple[str, str]]]:
    """Everything the PBX read up to now but the marker: a Ping answered means all bytes before it were read."""
    await harness.bridge.connection.action({"Action": "Ping"})
    lines = harness.pbx.action_lines_received
    assert dict(lines[-1]).get("Action") == "Ping"
    return [action for action in lines[:-1] if dict(action).get("Action") != "Ping"]


async def test_the_gate_holds_when_a_builder_forgets(harness: Harness) -> None:
    """Actions built by hand, with nothing checked, sent the way the adapter sends its own: none reaches the PBX."""
    before = len(await flushed(harness))
    smuggled = [
        pause_action(INJECTION),
        pause_action("Lunch\nAction: QueueRemove"),  # a bare LF ends a line for Asterisk
        commands.hangup("Local/1001@agents-00000001;1\r\nAction: Command\r\nCommand: core stop now"),
        commands.redirect("Local/1001@agents-00000001;1", "hold\r\nExten: 0", "s"),
        {"Action": "Originate", "Channel": "Local/1001@agents", "Variable": ["CRM_A=1\r\nAction: Logoff"]},
        {"Action": "QueuePause", "ActionID": "mine\r\nAction: QueueRemove", "Interface": "Local/1001@agents"},
        pause_action("x" * 10_000),
    ]
    for fields in smuggled:
        with pytest.raises(CommandError) as caught:
            await harness.bridge._run("test", fields)
        assert caught.value.code is CommandErrorCode.INVALID
        with pytest.raises(CommandError):
            await harness.bridge.connection.action_list(fields)
    assert len(await flushed(harness)) == before
    assert {a: m.paused for a, m in harness.pbx.members["support"].items()} == {"1001": False, "1002": False}


async def test_the_adapter_refuses_an_injected_pause_reason_and_sends_nothing(harness: Harness) -> None:
    before = len(await flushed(harness))
    for reason in (INJECTION, "Lunch\nAction: QueueRemove", "Lunch\x00"):
        with pytest.raises(CommandError) as caught:
            await harness.bridge.pause("1001", reason)
        assert caught.value.code is CommandErrorCode.INVALID and "pause reason" in caught.value.detail
    assert len(await flushed(harness)) == before
    assert set(harness.pbx.members["support"]) == {"1001", "1002"}
    await harness.bridge.pause("1001", "Lunch")  # a plain reason still pauses
    [sent] = (await flushed(harness))[before:]
    assert dict(sent)["Reason"] == "Lunch" and [name for name, _ in sent].count("Action") == 1


async def test_the_demo_pbx_shows_a_smuggled_header_or_action() -> None:
    """What the live tests rely on: a value that got through would show as an extra line or action at the PBX."""
    pbx = DemoPbx(secret=SECRET, time_scale=0.01, seed=7)
    await pbx.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", pbx.port)
    try:
        await asyncio.wait_for(reader.readline(), 5)  # the banner
        writer.write(f"Action: Login\r\nUsername: crm\r\nSecret: {SECRET}\r\n\r\n".encode())
        writer.write(b"Action: QueuePause\r\nInterface: Local/1001@agents\r\nPaused: true\r\n")
        writer.write(b"Reason: x\nAction:Logoff\r\n")
        writer.write(b"\r\nAction: QueuePause\r\nReason: y\n\nAction: QueueRemove\r\nQueue: support\r\n")
        writer.write(b"Interface: Local/1002@agents\r\n\r\nAction: Ping\r\n\r\n")
        await writer.drain()
        while not pbx.action_lines_received or dict(pbx.action_lines_received[-1]).get("Action") != "Ping":
            assert await asyncio.wait_for(reader.read(4096), 5)
        received = pbx.action_lines_received
        assert [name for name, _ in received[1]] == ["Action", "Interface", "Paused", "Reason", "Action"]
        assert received[1][-1] == ("Action", "Logoff")
        first_action = [next(value for name, value in action if name == "Action") for action in received]
        assert first_action == ["Login", "QueuePause", "QueuePause", "QueueRemove", "Ping"]
        assert "1002" not in pbx.members["support"]  # the smuggled action did what it said
    finally:
        writer.close()
        await pbx.stop()


async def test_a_secret_with_a_line_break_is_a_refused_login_and_never_reaches_the_pbx() -> None:
    """CRM_AMI_URL is URL-decoded: `%0D%0A` in it would put a header of its own into the Login action."""
    pbx = DemoPbx(secret=SECRET)
    await pbx.start()
    endpoint = parse_ami_url(f"ami://crm:{SECRET}%0D%0AAction%3A%20Logoff@127.0.0.1:{pbx.port}")
    bridge = AsteriskAdapter(endpoint, InMemoryEventBus(), backoff_initial=0.05, backoff_max=0.05)
    try:
        await bridge.start()
        await asyncio.wait_for(bridge.connection.login_refused.wait(), 5)
        error = bridge.connection.last_error or ""
        assert "AMI secret may not contain line breaks" in error and "CRM_AMI_URL" in error
        assert SECRET not in error and pbx.action_lines_received == []
    finally:
        await bridge.stop()
        await pbx.stop()
