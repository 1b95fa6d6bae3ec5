"""Flow files are checked on load: each mistake is reported with its line and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.flow import FlowError, load_flow, parse_flow

GOOD_HEAD = "start: a\nnodes:\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "start: a\nnodes:\n  a: {type: play, prompt: hi, next: b}\n",
            "line 3: node 'a' next goes to 'b', which is not a node",
        ),
        (GOOD_HEAD + "  a:\n    type: dance\n", "line 4: node 'a' has type 'dance'"),
        (GOOD_HEAD + "  a:\n    type: play\n    prompt: hi\n", "line 4: play node 'a' needs next"),
        (
            GOOD_HEAD + "  a:\n    type: hangup\n    colour: red\n",
            "line 4: hangup node 'a' has unknown field(s) colour",
        ),
        (
            GOOD_HEAD + "  a:\n    type: menu\n    prompt: m\n    options: {12: a}\n",
            "has option 12: options are single keys",
        ),
        (
            GOOD_HEAD + "  a:\n    type: menu\n    prompt: m\n    options: {1: a}\n    timeout: -3\n",
            "has timeout -3: a whole number from 0 to 60",
        ),
        (GOOD_HEAD + "  a:\n    type: play\n    prompt: ../../etc/passwd;rm\n    next: a\n", "a sound file name"),
        (
            GOOD_HEAD + "  a:\n    type: hours\n    timezone: Mars/Olympus\n    open: {mon-fri: 08:00-18:00}\n"
            "    open_next: a\n    closed_next: a\n",
            "not a known time zone",
        ),
        (
            GOOD_HEAD
            + "  a:\n    type: hours\n    open: {mon-fri: '18:00-08:00'}\n    open_next: a\n    closed_next: a\n",
            "not a span within one day",
        ),
        (
            GOOD_HEAD
            + "  a:\n    type: hours\n    open: {weekdays: '08:00-18:00'}\n    open_next: a\n    closed_next: a\n",
            "use mon, tue",
        ),
        (GOOD_HEAD + "  a:\n    type: set\n    variable: lower_case\n    value: x\n    next: a\n", "use CAPITALS"),
        (
            GOOD_HEAD + "  a:\n    type: menu\n    prompt: m\n    options: {1: a}\n    speech: {hello: 2}\n",
            "maps the word 'hello' to '2', which is not one of its options",
        ),
        ("start: z\nnodes:\n  a: {type: hangup}\n", "line 1: `start` must name one of the nodes"),
        ("nodes: [1, 2]\n", "`nodes` must map node names"),
        ("start: a\nnodes:\n  a: {type: hangup\n", "line 4: not valid YAML"),
        ("- just\n- a list\n", "a flow file is a mapping"),
        ("start: a\nwhat: 1\nnodes:\n  a: {type: hangup}\n", "unknown top-level key(s) what"),
    ],
)
def test_invalid_flows_are_refused_with_the_line_and_the_problem(text: str, expected: str) -> None:
    with pytest.raises(FlowError) as caught:
        parse_flow(text, source="flows/test.yaml")
    message = str(caught.value)
    assert expected in message and message.startswith("flows/test.yaml")


def test_sample_flow_and_a_toml_flow_load(tmp_path: Path) -> None:
    sample = load_flow(Path(__file__).resolve().parents[2] / "ivr" / "flows" / "sample.yaml")
    assert sample.start == "hours" and {n.type for n in sample.nodes.values()} >= {
        "hours",
        "lookup",
        "menu",
        "language",
        "queue",
        "callback",
        "survey",
        "voicemail",
        "hangup",
        "set",
        "offer_ticket",
        "ticket_status",
    }
    toml = tmp_path / "small.toml"
    toml.write_text('start = "bye"\n[nodes.bye]\ntype = "hangup"\nprompt = "goodbye"\n')
    assert load_flow(toml).nodes["bye"].type == "hangup"
    broken = tmp_path / "broken.toml"
    broken.write_text("start = \n")
    with pytest.raises(FlowError, match=r"broken\.toml"):
        load_flow(broken)
    with pytest.raises(FlowError, match="cannot be read"):
        load_flow(tmp_path / "missing.yaml")
