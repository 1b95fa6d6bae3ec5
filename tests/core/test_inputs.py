"""Input building blocks: limits read from the tables, control characters refused, one sentence per bad field, and
the JSON nesting check that runs before the parser."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent_desktop.routes.common import MAX_JSON_DEPTH, json_depth_exceeds
from crm_core.customers.models import Customer, CustomerEmail, Tag
from crm_core.customers.schemas import CustomerIn, NoteIn
from crm_core.errors import ValidationFailed
from crm_core.inputs import check_text, column_length, first_problem, multi_line, single_line

COLUMNS = ("name", "title", "street", "city", "postal_code", "timezone", "language", "vip_tier")


@pytest.mark.parametrize("column", COLUMNS)
def test_customer_fields_take_their_length_from_the_table(column: str) -> None:
    length = column_length(getattr(Customer, column))
    other = {"name": "Someone"} if column != "name" else {}
    assert getattr(CustomerIn(**other, **{column: "a" * length}), column) == "a" * length
    with pytest.raises(ValidationError) as refused:
        CustomerIn(**other, **{column: "a" * (length + 1)})
    assert first_problem(refused.value) == (column, f"{column} is longer than {length} characters.")


def test_list_items_take_their_length_from_the_table() -> None:
    email = "a" * (column_length(CustomerEmail.email) - 8) + "@x.test"
    assert CustomerIn(name="X", emails=[email]).emails == [email]
    with pytest.raises(ValidationError) as refused:
        CustomerIn(name="X", tags=["t" * (column_length(Tag.name) + 1)])
    assert first_problem(refused.value) == ("tags.0", "tags.0 is longer than 64 characters.")


@pytest.mark.parametrize("character", ["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\ud800"])
def test_single_line_text_refuses_every_control_character(character: str) -> None:
    with pytest.raises(ValueError, match=f"U\\+{ord(character):04X}"):
        single_line(f"Ali{character}ce")


def test_multi_line_text_keeps_line_breaks_and_tabs_only() -> None:
    assert multi_line("one\r\n\ttwo\n") == "one\r\n\ttwo\n"
    for character in ("\x00", "\x0b", "\x0c", "\x1b", "\x9f", "\udfff"):
        with pytest.raises(ValueError, match="other than line breaks and tabs"):
            multi_line(f"a{character}b")
    assert NoteIn(body=" Call back\n\tafter 6 ").body == "Call back\n\tafter 6"


@pytest.mark.parametrize(
    ("data", "sentence"),
    [
        ({}, "name is required."),
        ({"name": ""}, "name cannot be empty."),
        ({"name": 7}, "name must be text."),
        ({"name": "X", "kind": "robot"}, "kind must be 'person' or 'company'."),
        ({"name": "X", "phones": "+1555"}, "phones must be a list."),
        ({"name": "X", "emails": ["e@x.test"] * 21}, "emails has more than 20 items."),
        ({"name": "X", "country": "USA"}, "country is not in the expected form."),
        ({"name": "X", "colour": "red"}, "colour is not a field this request takes."),
        ({"name": "X", "\x00" * 50: 1}, "'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"),
        ({"name": "X\x00"}, "name must not contain control characters (U+0000)."),
    ],
)
def test_each_problem_is_one_sentence_naming_the_field(data: dict[str, object], sentence: str) -> None:
    with pytest.raises(ValidationError) as refused:
        CustomerIn.model_validate(data)
    _field, said = first_problem(refused.value)
    assert said.startswith(sentence) and said.endswith(".") and ". " not in said.removesuffix(".")


def test_check_text_for_plain_arguments() -> None:
    assert check_text("  Router  ", field="subject", max_length=10) == "Router"
    assert check_text("  two\nlines ", field="notes", max_length=20, multiline=True) == "  two\nlines "
    for value, message in (
        (None, "subject must be text."),
        ("   ", "subject cannot be empty."),
        ("x" * 11, "subject is longer than 10 characters."),
        ("a\x00", "subject must not contain control characters (U+0000)."),
    ):
        with pytest.raises(ValidationFailed) as refused:
            check_text(value, field="subject", max_length=10, required=True)
        assert refused.value.message == message and refused.value.details == {"field": "subject"}


def test_json_nesting_is_measured_outside_strings() -> None:
    assert not json_depth_exceeds(b'{"a": [1, {"b": [2]}]}')
    assert not json_depth_exceeds(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    assert json_depth_exceeds(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert json_depth_exceeds(b"[" * 100_000)  # unbalanced: the parser would recurse all the same
    in_a_string = b'{"note": "' + b"[{" * 1000 + b'\\" [[[", "n": 1}'
    assert not json_depth_exceeds(in_a_string)
    assert json_depth_exceeds(b'["\\\\"' + b", [" * 40 + b"]" * 40 + b"]")  # an escaped backslash ends no string
