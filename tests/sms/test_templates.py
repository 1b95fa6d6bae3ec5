"""Merge fields: each checked before sending; a missing or blank one is an error, never a blank in a message."""

from __future__ import annotations

import pytest

from crm_core.errors import ValidationFailed
from crm_core.sms.templates import MissingMergeField, customer_fields, render, template_fields


def test_a_template_is_filled_per_recipient() -> None:
    values = customer_fields("Alice Example", {"plan": "Gold", "visits": 3, "vip": True, "Bad-Key": "x"})
    values["agent_name"] = "Sam"
    rendered = render("Hi {first_name}, {agent_name} here: your {plan} plan ({visits} visits).", values)
    assert rendered.body == "Hi Alice, Sam here: your Gold plan (3 visits)."
    assert (rendered.shape.encoding, rendered.shape.segments) == ("GSM-7", 1)
    assert "vip" not in values and "Bad-Key" not in values


@pytest.mark.parametrize(
    ("values", "missing"),
    [
        ({}, ["first_name", "ticket_number"]),
        ({"first_name": "Alice"}, ["ticket_number"]),
        ({"first_name": "  ", "ticket_number": "42"}, ["first_name"]),  # blank is missing
    ],
)
def test_a_missing_field_is_an_error_before_sending(values: dict[str, str], missing: list[str]) -> None:
    with pytest.raises(MissingMergeField) as refused:
        render("Hi {first_name}, ticket #{ticket_number} is resolved.", values)
    assert refused.value.code == "missing_merge_field"
    assert refused.value.details["missing"] == missing
    assert all("{" + name + "}" in refused.value.message for name in missing)


@pytest.mark.parametrize("template", ["Hi {0}", "Hi {first_name.__class__}", "Hi {first_name!r}", "Hi {x:>10}", "Hi {"])
def test_only_plain_named_fields_are_allowed(template: str) -> None:
    with pytest.raises(ValidationFailed):
        template_fields(template)


def test_the_fields_a_template_uses() -> None:
    assert template_fields("{first_name} {first_name} {agent_name} {{literal}}") == ["first_name", "agent_name"]
    assert render("{{literal}} {first_name}", {"first_name": "Ann"}).body == "{literal} Ann"
