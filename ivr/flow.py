"""IVR flow files: YAML (or TOML) documents of named nodes, validated on load with errors that name the line.

A flow has a `start` node and `nodes`, each with a `type` and the names of the nodes that follow. Everything is
checked before a single call uses the flow: unknown types or fields, missing targets, bad times, unreachable loops.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

NODE_FIELDS: dict[str, dict[str, set[str]]] = {
    # type: {"required": {...}, "optional": {...}}; fields ending in "next"/targets are node names
    "play": {"required": {"prompt", "next"}, "optional": {"say"}},
    "menu": {
        "required": {"prompt", "options"},
        "optional": {"say", "timeout", "retries", "invalid", "no_input", "invalid_prompt", "speech", "name"},
    },
    "read_digits": {"required": {"prompt", "variable", "next"}, "optional": {"say", "max_digits", "timeout"}},
    "hours": {"required": {"open", "open_next", "closed_next"}, "optional": {"timezone", "holidays"}},
    "language": {"required": {"prompt", "options", "next"}, "optional": {"say", "timeout"}},
    "set": {"required": {"variable", "value", "next"}, "optional": set()},
    "lookup": {"required": {"known", "unknown"}, "optional": {"vip", "open_ticket"}},
    "offer_ticket": {"required": {"accept", "decline"}, "optional": {"prompt", "say", "timeout"}},
    "ticket_status": {"required": {"next"}, "optional": {"prompt", "say", "max_digits", "timeout", "retries"}},
    "queue": {"required": {"queue"}, "optional": {"priority"}},
    "callback": {"required": {"queue", "next"}, "optional": {"prompt", "say", "timeout"}},
    "survey": {"required": {"next"}, "optional": {"prompt", "say", "timeout", "retries"}},
    "voicemail": {"required": {"mailbox"}, "optional": {"prompt", "say"}},
    "hangup": {"required": set(), "optional": {"prompt", "say"}},
}
TARGET_FIELDS = {
    "next",
    "invalid",
    "no_input",
    "open_next",
    "closed_next",
    "known",
    "unknown",
    "vip",
    "open_ticket",
    "accept",
    "decline",
}
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,40}$")
_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]{0,40}$")
_PROMPT = re.compile(r"^[A-Za-z0-9/_.-]{1,120}$")
_QUEUE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class FlowError(ValueError):
    """A flow file that cannot be used; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class Node:
    name: str
    type: str
    fields: dict[str, Any]
    line: int

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def target(self, key: str) -> str | None:
        value = self.fields.get(key)
        return str(value) if value is not None else None


@dataclass(frozen=True)
class Flow:
    name: str
    start: str
    nodes: dict[str, Node]
    source: str = ""
    languages: tuple[str, ...] = field(default=("en",))

    def node(self, name: str) -> Node:
        return self.nodes[name]


def hours_target(node: Node, now: datetime) -> str | None:
    """Where an `hours` node goes at `now`: open within its week's spans and not on a holiday, in its time zone."""
    local = now.astimezone(ZoneInfo(str(node.get("timezone", "UTC"))))
    span = None if local.date() in node.get("holidays", set()) else node.get("open").get(local.weekday())
    is_open = span is not None and span[0] <= local.time().replace(tzinfo=None) < span[1]
    return node.target("open_next" if is_open else "closed_next")


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers the line of every mapping (as the key `__line__`)."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def load_flow(path: Path) -> Flow:
    """Read and validate a flow file (.yaml/.yml or .toml)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError(f"{path}: cannot be read ({exc}).") from None
    return parse_flow(text, source=str(path), toml=path.suffix == ".toml", name=path.stem)


def parse_flow(text: str, *, source: str = "<flow>", toml: bool = False, name: str = "flow") -> Flow:
    if toml:
        try:
            document: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FlowError(f"{source}: {exc}.") from None
    else:
        try:
            document = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
            raise FlowError(f"{source} line {line}: not valid YAML ({exc.problem}).") from None
        except yaml.YAMLError as exc:
            raise FlowError(f"{source}: not valid YAML ({exc}).") from None
    return _validate(document, source, name)


def _where(source: str, mapping: Any) -> str:
    line = mapping.get("__line__") if isinstance(mapping, dict) else None
    return f"{source} line {line}" if line else source


def _validate(document: Any, source: str, name: str) -> Flow:
    if not isinstance(document, dict):
        raise FlowError(f"{source}: a flow file is a mapping with `start` and `nodes`.")
    unknown = set(document) - {"start", "nodes", "name", "languages", "__line__"}
    if unknown:
        raise FlowError(f"{_where(source, document)}: unknown top-level key(s) {', '.join(sorted(unknown))}.")
    nodes_raw = document.get("nodes")
    if not isinstance(nodes_raw, dict) or not [k for k in nodes_raw if k != "__line__"]:
        raise FlowError(f"{_where(source, document)}: `nodes` must map node names to nodes.")
    start = document.get("start")
    nodes: dict[str, Node] = {}
    for node_name, raw in nodes_raw.items():
        if node_name == "__line__":
            continue
        where = _where(source, raw) if isinstance(raw, dict) else _where(source, nodes_raw)
        if not isinstance(node_name, str) or not _NAME.match(node_name):
            raise FlowError(f"{where}: {node_name!r} is not a node name (letters, digits, _ and -).")
        if not isinstance(raw, dict):
            raise FlowError(f"{where}: node '{node_name}' must be a mapping with a `type`.")
        node_type = raw.get("type")
        if node_type not in NODE_FIELDS:
            known = ", ".join(sorted(NODE_FIELDS))
            raise FlowError(f"{where}: node '{node_name}' has type {node_type!r}; known types are {known}.")
        spec = NODE_FIELDS[node_type]
        fields = {k: v for k, v in raw.items() if k not in ("type", "__line__")}
        missing = spec["required"] - set(fields)
        if missing:
            raise FlowError(f"{where}: {node_type} node '{node_name}' needs {', '.join(sorted(missing))}.")
        extra = set(fields) - spec["required"] - spec["optional"]
        if extra:
            raise FlowError(f"{where}: {node_type} node '{node_name}' has unknown field(s) {', '.join(sorted(extra))}.")
        _check_fields(node_name, node_type, fields, where)
        nodes[node_name] = Node(node_name, node_type, fields, int(raw.get("__line__", 0)))
    if not isinstance(start, str) or start not in nodes:
        raise FlowError(f"{_where(source, document)}: `start` must name one of the nodes, not {start!r}.")
    for node in nodes.values():
        where = f"{source} line {node.line}"
        targets = [(k, node.fields[k]) for k in TARGET_FIELDS if k in node.fields]
        if node.type in ("menu",):
            targets += [(f"option {k}", v) for k, v in node.fields["options"].items() if k != "__line__"]
        for label, target in targets:
            if not isinstance(target, str) or target not in nodes:
                raise FlowError(f"{where}: node '{node.name}' {label} goes to {target!r}, which is not a node.")
    languages = document.get("languages", ["en"])
    if not isinstance(languages, list) or not all(isinstance(x, str) for x in languages):
        raise FlowError(f"{_where(source, document)}: `languages` is a list of language codes.")
    return Flow(
        name=str(document.get("name", name)), start=start, nodes=nodes, source=source, languages=tuple(languages)
    )


def _check_fields(node_name: str, node_type: str, fields: dict[str, Any], where: str) -> None:
    def fail(problem: str) -> None:
        raise FlowError(f"{where}: {node_type} node '{node_name}' {problem}.")

    for key in ("prompt", "invalid_prompt"):
        if key in fields and (not isinstance(fields[key], str) or not _PROMPT.match(fields[key])):
            fail(f"has {key} {fields[key]!r}: a sound file name (letters, digits, / _ . -)")
    for key in ("timeout", "retries", "max_digits", "priority"):
        if key in fields and (
            not isinstance(fields[key], int) or isinstance(fields[key], bool) or not 0 <= fields[key] <= 60
        ):
            fail(f"has {key} {fields[key]!r}: a whole number from 0 to 60")
    if "variable" in fields and (not isinstance(fields["variable"], str) or not _VARIABLE.match(fields["variable"])):
        fail(f"sets variable {fields['variable']!r}: use CAPITALS, digits and _ (like CRM_REASON)")
    if "queue" in fields and (not isinstance(fields["queue"], str) or not _QUEUE.match(fields["queue"])):
        fail(f"routes to queue {fields['queue']!r}: a queue name")
    if node_type in ("menu", "language"):
        options = fields["options"]
        if not isinstance(options, dict) or not [k for k in options if k != "__line__"]:
            fail("needs options: a mapping from a key (0-9, * or #) to a node")
        for key in options:
            if key == "__line__":
                continue
            if len(str(key)) != 1 or str(key) not in "0123456789*#":
                fail(f"has option {key!r}: options are single keys 0-9, * or #")
        # YAML reads 1: as an int key; keep them as the digit strings callers press
        fields["options"] = {str(k): v for k, v in options.items() if k != "__line__"}
    if "speech" in fields:
        speech = fields["speech"]
        if not isinstance(speech, dict) or not all(
            isinstance(v, str | int) for k, v in speech.items() if k != "__line__"
        ):
            fail("has speech: a mapping from a spoken word to the option key it means")
        fields["speech"] = {str(k).lower(): str(v) for k, v in speech.items() if k != "__line__"}
        for word, key in fields["speech"].items():
            if key not in fields["options"]:
                fail(f"maps the word {word!r} to {key!r}, which is not one of its options")
    if node_type == "hours":
        _check_hours(fields, fail)


def _check_hours(fields: dict[str, Any], fail: Any) -> None:
    try:
        ZoneInfo(str(fields.get("timezone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"has timezone {fields.get('timezone')!r}, which is not a known time zone (like Europe/Berlin)")
    opening = fields["open"]
    if not isinstance(opening, dict):
        fail("needs open: days (mon-fri, sat …) mapped to hours (08:00-18:00)")
    parsed: dict[int, tuple[time, time]] = {}
    for days, hours in opening.items():
        if days == "__line__":
            continue
        for day in _days(str(days), fail):
            parsed[day] = _hours(str(hours), fail)
    fields["open"] = parsed
    holidays = fields.get("holidays", [])
    if not isinstance(holidays, list):
        fail("has holidays: a list of dates (YYYY-MM-DD)")
    try:
        fields["holidays"] = {d if isinstance(d, date) else date.fromisoformat(str(d)) for d in holidays}
    except ValueError as exc:
        fail(f"has a holiday that is not a date ({exc})")


def _days(spec: str, fail: Any) -> list[int]:
    days: list[int] = []
    for part in spec.lower().split(","):
        first, _, last = part.strip().partition("-")
        if first not in DAYS or (last and last not in DAYS):
            fail(f"has days {spec!r}: use mon, tue … sun, ranges like mon-fri, or lists like sat,sun")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days += list(range(a, b + 1)) if a <= b else list(range(a, 7)) + list(range(0, b + 1))
    return days


def _hours(spec: str, fail: Any) -> tuple[time, time]:
    match = re.match(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$", spec.strip())
    if match is None:
        fail(f"has hours {spec!r}: use HH:MM-HH:MM")
    assert match is not None
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2, m2) <= (h1, m1):
        fail(f"has hours {spec!r}, which is not a span within one day")
    return time(h1, m1), time(min(h2, 23), m2 if h2 < 24 else 59)
