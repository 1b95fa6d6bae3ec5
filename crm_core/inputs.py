"""Typed inputs' building blocks: text limits read from the tables, control characters refused, and one sentence per
bad field."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import ErrorDetails

from crm_core.errors import ValidationFailed

M = TypeVar("M", bound=BaseModel)

# Single-line text (a name, a city, a queue): no control character at all. Multi-line text (a note, a description):
# line breaks and tabs, nothing else. Never a lone surrogate (from a JSON "\ud800"), which no database can encode.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
LONG_TEXT = 10_000  # notes and descriptions (Text columns): what a person types, not a file


def column_length(attribute: Any) -> int:
    """The length of a mapped String(n) column (Customer.city → 100): input models take their limits from here."""
    length = getattr(attribute.type, "length", None)
    if not isinstance(length, int):
        raise TypeError(f"{attribute} is not a String(n) column")
    return length


def _found(match: re.Match[str]) -> str:
    return f"U+{ord(match.group()):04X}"


def single_line(value: str) -> str:
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"must not contain control characters ({_found(found)})")
    return value


def multi_line(value: str) -> str:
    found = _CONTROL_BUT_LINES.search(value)
    if found:
        raise ValueError(f"must not contain control characters other than line breaks and tabs ({_found(found)})")
    return value


SINGLE_LINE = AfterValidator(single_line)
MULTI_LINE = AfterValidator(multi_line)


def check_text(value: object, *, field: str, max_length: int, multiline: bool = False, required: bool = False) -> str:
    """For services that take plain arguments: `value` as text within the limits, or ValidationFailed naming `field`."""
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be text.", field=field)
    text = value if multiline else value.strip()  # a description keeps its layout
    if required and not text.strip():
        raise ValidationFailed(f"{field} cannot be empty.", field=field)
    if len(text) > max_length:
        raise ValidationFailed(f"{field} is longer than {max_length} characters.", field=field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800": no database or browser can keep it
        raise ValidationFailed(f"{field} is not valid Unicode text.", field=field) from None
    try:
        (multi_line if multiline else single_line)(text)
    except ValueError as exc:
        raise ValidationFailed(f"{field} {exc}.", field=field) from None
    return text


def _label(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "The request"
    label = ".".join(str(part) for part in loc)
    if not label or len(label) > 40 or _CONTROL.search(label):
        return repr(label[:40] + ("…" if len(label) > 40 else "")).encode("ascii", "backslashreplace").decode()
    return label


def describe(error: ErrorDetails) -> str:
    """One sentence about one pydantic error, starting with the field's name."""
    field = _label(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return f"{field} is required."
    if kind == "extra_forbidden":
        return f"{field} is not a field this request takes."
    if kind == "string_too_long":
        return f"{field} is longer than {ctx.get('max_length')} characters."
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return f"{field} cannot be empty."
        return f"{field} is shorter than {ctx.get('min_length')} characters."
    if kind == "string_type":
        return f"{field} must be text."
    if kind == "string_unicode":  # a lone surrogate from a JSON "\ud800"
        return f"{field} is not valid Unicode text."
    if kind in ("bool_type", "bool_parsing"):
        return f"{field} must be true or false."
    if kind in ("list_type", "tuple_type"):
        return f"{field} must be a list."
    if kind == "too_long":
        return f"{field} has more than {ctx.get('max_length')} items."
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{field} must be an object."
    if kind == "literal_error":
        return f"{field} must be {ctx.get('expected')}."
    if kind == "string_pattern_mismatch":
        return f"{field} is not in the expected form."
    message = str(error["msg"])
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
        return f"{field} {message}."
    return f"{field}: {message[:1].lower()}{message[1:]}."


def first_problem(error: ValidationError) -> tuple[str, str]:
    """(field, sentence) of the first thing wrong in a pydantic validation error."""
    problems = error.errors(include_url=False)
    if not problems:
        return "", "The request is not valid."
    first = problems[0]
    return ".".join(str(p) for p in first["loc"])[:64], describe(first)


def validated(model: type[M], data: object) -> M:
    """`data` as `model`, or ValidationFailed saying in one sentence which field is wrong and why."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field, sentence = first_problem(exc)
        raise ValidationFailed(sentence, field=field) from None
