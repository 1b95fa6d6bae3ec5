"""PBX commands as AMI actions, and what each AMI answer means for the person who clicked.

Each builder returns the action's fields; `check` turns the PBX's answer into a CommandResult or a CommandError
with a stable code. The messages are those Asterisk 22 gives (see tests/fixtures/ami/bad_action.ami).

The `check_*` functions are the first line: they refuse a value in words that fit it (a number, a queue). The gate
that holds whatever a builder forgets is `cti_bridge.ami.check_action`, which every action passes on its way out.
"""

from __future__ import annotations

import re

from cti_bridge.adapter import CommandError, CommandErrorCode, CommandResult, SpyMode

AGENT_CONTEXT = "agents"
OUTBOUND_CONTEXT = "outbound"
INTERNAL_CONTEXT = "internal"
HOLD_CONTEXT = "hold"
PARKING_CONTEXT = "parkedcalls"  # res_parking's default lot: dialling a space there picks up its caller
PARK_TIMEOUT_MS = 60_000  # then the caller goes back to the agent's channel (TimeoutChannel)

# matched with fullmatch: `$` would also match before a trailing newline ("1001\n" passed as an extension)
_NUMBER = re.compile(r"\+?[0-9*#]{2,20}")
_EXTENSION = re.compile(r"[0-9A-Za-z_]{1,20}")
_QUEUE = re.compile(r"[0-9A-Za-z_-]{1,40}")
_NUMBER_PUNCTUATION = re.compile(r"[ ().-]")  # how people write numbers; not tabs or line breaks
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
REASON_CHARS = 80
CALLER_ID_CHARS = 80

_CHANNEL_GONE = ("No such channel", "Channel specified does not exist", "Channel does not exist", "Invalid channel")


def agent_interface(agent: str) -> str:
    return f"Local/{agent}@{AGENT_CONTEXT}"


def _shown(value: str) -> str:
    """A refused value as an error sentence may quote it: short, its control characters escaped."""
    return repr(value[:40] + ("…" if len(value) > 40 else ""))


def check_number(number: str) -> str:
    cleaned = _NUMBER_PUNCTUATION.sub("", number)
    if not _NUMBER.fullmatch(cleaned):
        raise CommandError(CommandErrorCode.INVALID, f"{_shown(number)} is not a number that can be dialled.")
    return cleaned


def check_extension(agent: str) -> str:
    if not _EXTENSION.fullmatch(agent):
        raise CommandError(CommandErrorCode.INVALID, f"{_shown(agent)} is not an agent extension.")
    return agent


def check_queue(queue: str) -> str:
    if not _QUEUE.fullmatch(queue):
        raise CommandError(CommandErrorCode.INVALID, f"{_shown(queue)} is not a queue name.")
    return queue


def check_text(field: str, value: str, limit: int) -> str:
    """Free text bound for the PBX (a pause reason, a caller ID): no line breaks or control characters; cut to
    `limit` characters, as the PBX would show no more."""
    if _CONTROL.search(value):
        raise CommandError(CommandErrorCode.INVALID, f"The {field} may not contain line breaks or control characters.")
    return value[:limit]


def event_filter(regex: str) -> dict[str, str]:
    """Asterisk's Filter action (needs the `system` write permission): from now on this session gets only the
    events the regex matches."""
    return {"Action": "Filter", "Operation": "Add", "Filter": regex}


def originate_dial(agent: str, number: str, caller_id: str | None) -> dict[str, str]:
    fields = {
        "Action": "Originate",
        "Channel": agent_interface(check_extension(agent)),
        "Context": OUTBOUND_CONTEXT,
        "Exten": check_number(number).lstrip("+"),
        "Priority": "1",
        "Timeout": "30000",
        "Async": "true",
    }
    if caller_id:
        fields["CallerID"] = check_text("caller ID", caller_id, CALLER_ID_CHARS)
    return fields


def blind_transfer(channel: str, target: str) -> dict[str, str]:
    return {"Action": "BlindTransfer", "Channel": channel, "Exten": target, "Context": INTERNAL_CONTEXT}


def attended_transfer(channel: str, target: str) -> dict[str, str]:
    return {"Action": "Atxfer", "Channel": channel, "Exten": target, "Context": INTERNAL_CONTEXT}


def redirect(channel: str, context: str, exten: str) -> dict[str, str]:
    return {"Action": "Redirect", "Channel": channel, "Context": context, "Exten": exten, "Priority": "1"}


def park(channel: str, agent_channel: str) -> dict[str, str]:
    """Hold, as Asterisk does it: park the caller; on timeout the PBX rings the holding agent back."""
    return {
        "Action": "Park",
        "Channel": channel,
        "TimeoutChannel": agent_channel,
        "Timeout": str(PARK_TIMEOUT_MS),
    }


def pickup(agent: str, space: str) -> dict[str, str]:
    """Resume: ring the agent's device and connect it to the parking space of the held caller."""
    if not space.isdigit():
        raise CommandError(CommandErrorCode.INVALID, f"{space!r} is not a parking space.")
    return {
        "Action": "Originate",
        "Channel": agent_interface(check_extension(agent)),
        "Context": PARKING_CONTEXT,
        "Exten": space,
        "Priority": "1",
        "CallerID": f'"Agent {agent}" <{agent}>',
        "Timeout": "30000",
        "Async": "true",
    }


def hangup(channel: str) -> dict[str, str]:
    return {"Action": "Hangup", "Channel": channel, "Cause": "16"}


def queue_add(agent: str, queue: str) -> dict[str, str]:
    return {
        "Action": "QueueAdd",
        "Queue": check_queue(queue),
        "Interface": agent_interface(check_extension(agent)),
        "StateInterface": f"Custom:{agent}",
        "MemberName": f"Agent {agent}",
        "Penalty": "0",
    }


def queue_remove(agent: str, queue: str) -> dict[str, str]:
    return {"Action": "QueueRemove", "Queue": check_queue(queue), "Interface": agent_interface(check_extension(agent))}


def queue_pause(agent: str, paused: bool, reason: str, queue: str | None) -> dict[str, str]:
    fields = {
        "Action": "QueuePause",
        "Interface": agent_interface(check_extension(agent)),
        "Paused": "true" if paused else "false",
    }
    if paused and reason:
        fields["Reason"] = check_text("pause reason", reason, REASON_CHARS)
    if queue:
        fields["Queue"] = check_queue(queue)
    return fields


def spy(supervisor: str, agent: str, mode: SpyMode) -> dict[str, str]:
    # q: no beep; w: whisper to the agent; B: barge (talk to both). The agent's channels are Local/<ext>@agents-…
    options = {SpyMode.LISTEN: "q", SpyMode.WHISPER: "qw", SpyMode.BARGE: "qB"}[mode]
    return {
        "Action": "Originate",
        "Channel": agent_interface(check_extension(supervisor)),
        "Application": "ChanSpy",
        "Data": f"Local/{check_extension(agent)}@{AGENT_CONTEXT},{options}",
        "CallerID": f"Supervisor <{supervisor}>",
        "Async": "true",
    }


def check(command: str, answer: dict[str, str]) -> CommandResult:
    """The PBX's answer to `command` as a result, or a CommandError saying what went wrong."""
    if answer.get("Response") == "Success":
        return CommandResult(command=command, reference=answer.get("ActionID"))
    message = answer.get("Message", "").strip() or "no reason given"
    if any(text.lower() in message.lower() for text in _CHANNEL_GONE):
        raise CommandError(CommandErrorCode.CHANNEL_GONE, "The call is no longer there (it was hung up).")
    if "Interface not found" in message or "Unable to remove interface" in message:
        raise CommandError(CommandErrorCode.AGENT_NOT_LOGGED_IN, "The agent is not logged in to that queue.")
    if "No such queue" in message:
        raise CommandError(CommandErrorCode.INVALID, "There is no such queue on the PBX.")
    if "Already there" in message:
        raise CommandError(CommandErrorCode.REJECTED, "The agent is already in that queue.")
    raise CommandError(CommandErrorCode.REJECTED, f"The PBX refused {command}: {message}.")
