"""SMS templates with merge fields ({first_name}, {agent_name}, {ticket_number}, any custom field): every field
is checked before anything is sent, so a message never goes out with a blank where a name should be."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass

from crm_core.errors import ValidationFailed
from crm_core.sms.segments import SmsShape, sms_shape

_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
KNOWN_FIELDS = ("first_name", "last_name", "name", "agent_name", "ticket_number")


class MissingMergeField(ValidationFailed):
    code = "missing_merge_field"


def template_fields(template: str) -> list[str]:
    """The merge fields a template uses, in order; a malformed one ({0}, {a.b}, {x!r}, an odd brace) is refused."""
    fields: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValidationFailed(f"The template has an unmatched brace ({exc}).", field="template") from None
    for _text, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _FIELD.match(name) or spec or conversion:
            raise ValidationFailed(
                f"{{{name}}} is not a merge field: use lower-case names like {{first_name}}.", field="template"
            )
        if name not in fields:
            fields.append(name)
    return fields


def customer_fields(name: str, custom_fields: Mapping[str, object] | None = None) -> dict[str, str]:
    """The merge values a customer record gives: names and every custom field with a plain value."""
    parts = name.split()
    values = {"name": name, "first_name": parts[0] if parts else "", "last_name": parts[-1] if len(parts) > 1 else ""}
    for key, value in (custom_fields or {}).items():
        if isinstance(value, str | int | float) and not isinstance(value, bool) and _FIELD.match(key):
            values.setdefault(key, str(value))
    return values


@dataclass(frozen=True, slots=True)
class RenderedSms:
    body: str
    shape: SmsShape


def render(template: str, values: Mapping[str, str]) -> RenderedSms:
    """The message for one recipient; MissingMergeField (naming every missing field) when a value is absent or
    blank."""
    fields = template_fields(template)
    missing = [f for f in fields if not str(values.get(f, "")).strip()]
    if missing:
        raise MissingMergeField(
            f"No value for {', '.join('{' + f + '}' for f in missing)}; nothing was sent.",
            field="template",
            missing=missing,
        )
    body = template.format_map({f: str(values[f]).strip() for f in fields})
    if not body.strip():
        raise ValidationFailed("The message is empty.", field="template")
    return RenderedSms(body, sms_shape(body))
