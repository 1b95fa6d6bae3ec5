"""Bad input answers 4xx with one sentence naming the field, writes nothing, on SQLite and on PostgreSQL (which
refuses NUL bytes and over-long strings outright, where SQLite would have stored them)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_core.calls.models import CallLog
from crm_core.customers.models import Customer, Note
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.tickets.models import Ticket
from crm_core.users.service import SYSTEM
from tests.desktop.app_client import AppUnderTest, database_of_its_own, serve_app

DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
DEEP = "[" * 100_000 + "]" * 100_000

# (method, path, JSON body or raw text, status, field, the sentence's start); "{id}" is a customer's id
CASES: list[tuple[str, str, Any, int, str, str]] = [
    (
        "POST",
        "/api/customers",
        {"name": "Ali\x00ce"},
        400,
        "name",
        "name must not contain control characters (U+0000).",
    ),
    ("POST", "/api/customers", {"name": "A" * 201}, 400, "name", "name is longer than 200 characters."),
    ("POST", "/api/customers", {"name": 42}, 400, "name", "name must be text."),
    ("POST", "/api/customers", {"name": "Ok", "phone": ["+1555"]}, 400, "phone", "phone must be text."),
    ("POST", "/api/customers", {"name": "Ok", "linkedid": "17\x00"}, 400, "linkedid", "linkedid must not contain"),
    ("POST", "/api/customers", {"name": "Ok", "colour": "red"}, 400, "colour", "colour is not a field this request"),
    ("POST", "/api/customers", {"name": "\ud800"}, 400, "name", "name is not valid Unicode text."),
    ("POST", "/api/customers", DEEP, 422, "body", "The JSON body nests deeper than 32 levels."),
    ("POST", "/api/customers", "[1, 2]", 422, "body", "Send a JSON object."),
    ("POST", "/api/customers", b'{"name": "\x80"}', 422, "body", "The JSON body is not UTF-8 text."),
    ("POST", "/api/customers/{id}", {"vip_tier": "platinum-plus-plus"}, 400, "vip_tier", "vip_tier is longer than 16"),
    ("POST", "/api/customers/{id}/owner", {"owner_id": "\ud800"}, 422, "owner_id", "owner_id is not valid Unicode"),
    ("POST", "/api/customers/{id}", {"city": "C" * 101}, 400, "city", "city is longer than 100 characters."),
    ("POST", "/api/customers/{id}", {"name": "Bo\x00b"}, 400, "name", "name must not contain control characters"),
    ("POST", "/api/customers/{id}", {"name": ""}, 400, "name", "name cannot be empty."),
    ("POST", "/api/customers/{id}", {"country": "ﬃ"}, 400, "country", "country is not in the expected form."),
    ("POST", "/api/customers/{id}", {"timezone": "a/" * 40}, 400, "timezone", "timezone is longer than 64"),
    ("POST", "/api/customers/{id}", {"phones": ["1" * 65]}, 400, "phones.0", "phones.0 is longer than 64"),
    ("POST", "/api/customers/{id}/notes", {"body": "Call back\x00"}, 400, "body", "body must not contain control"),
    ("POST", "/api/customers/{id}/notes", {"body": "n" * 10_001}, 400, "body", "body is longer than 10000"),
    ("POST", "/api/customers/{id}/notes", {"body": {"nested": 1}}, 400, "body", "body must be text."),
    ("POST", "/api/customers/{id}/merge", {"merge_id": "\x00"}, 400, "merge_id", "merge_id must not contain"),
    ("POST", "/api/calls/1700000300.1/ticket", {"subject": "S" * 201}, 422, "subject", "subject is longer than 200"),
    ("POST", "/api/calls/1700000300.1/ticket", {"subject": "Hi", "customer_id": "f" * 32}, 404, "customer_id", ""),
    ("POST", "/api/calls/1700000300.1/ticket", {"subject": "Hi\x00"}, 422, "subject", "subject must not contain"),
    ("GET", "/reports?end=9999-12-31", None, 422, "end", "end must be before 9999-12-31."),
    ("GET", "/reports?start=2020-01-01&end=2023-01-01", None, 422, "end", "A report covers at most 366 days."),
    ("GET", "/reports?start=yesterday", None, 422, "start", "start is not a date (YYYY-MM-DD)."),
    ("GET", "/reports.csv?end=9999-12-31", None, 422, "end", "end must be before 9999-12-31."),
]
# refused before any handler runs: a control character in a path part, a query argument or a form field
EARLY: list[tuple[str, str, str]] = [
    ("GET", "/customers/%00", "The path part customer_id contains a control character (U+0000)."),
    ("GET", "/reports?queue=sup%00port", "The query argument queue contains a control character (U+0000)."),
    ("GET", "/reports?a%01=1", "The query argument 'a\\x01' contains a control character (U+0001)."),
    ("GET", "/api/calls/1700%1b/recording", "The path part linkedid contains a control character (U+001B)."),
    ("GET", "/static/app.css%00", "The path part filename contains a control character (U+0000)."),
]


async def counts(center: AppUnderTest) -> tuple[int, int, int]:
    async with center.runtime.sessions() as session:
        return (
            int(await session.scalar(select(func.count()).select_from(Customer)) or 0),
            int(await session.scalar(select(func.count()).select_from(Note)) or 0),
            int(await session.scalar(select(func.count()).select_from(Ticket)) or 0),
        )


@pytest.mark.parametrize("kind", DATABASES)
async def test_bad_input_answers_one_sentence_naming_the_field_and_writes_nothing(kind: str, tmp_path: Path) -> None:
    async with database_of_its_own(kind, tmp_path) as url, serve_app(url, tmp_path, users=("boss",)) as center:
        async with center.runtime.unit_of_work() as session:
            bob = await create_customer(
                session=session,
                actor=SYSTEM,
                region="US",
                data=CustomerIn(name="Bob Example", phones=[PhoneIn(number="+15551230002")]),
            )
            # the call the ticket cases open a ticket from (a supervisor may act on any call)
            session.add(CallLog(linkedid="1700000300.1", direction="inbound", offered_at=datetime.now(UTC)))
        client, csrf = await center.client("boss")
        before = await counts(center)
        headers = {"X-CSRF-Token": csrf}
        for method, path, body, status, field, sentence in CASES:
            target = path.replace("{id}", bob.id)
            if body is None:
                response = await client.open(target, method=method, headers=headers)
            elif isinstance(body, str | bytes):
                raw = {**headers, "Content-Type": "application/json"}
                data = body.encode() if isinstance(body, str) else body
                response = await client.open(target, method=method, headers=raw, data=data)
            else:
                response = await client.open(target, method=method, headers=headers, json=body)
            answer = await response.get_json()
            assert response.status_code == status, (path, body if not isinstance(body, str) else body[:20], answer)
            assert answer["message"].startswith(sentence), (path, answer)
            assert answer["message"].count(". ") == 0 and answer["message"].endswith("."), answer  # one sentence
            assert answer["details"]["field"] == field, (path, answer)
        missing = await client.post(
            "/api/calls/1700000300.1/ticket", json={"subject": "Hi", "customer_id": "f" * 32}, headers=headers
        )
        assert (await missing.get_json())["message"] == f"There is no customer {'f' * 32}."
        for method, path, sentence in EARLY:
            response = await client.open(path, method=method, headers={"Accept": "application/json"})
            assert response.status_code == 400, (path, await response.get_data(as_text=True))
            assert (await response.get_json())["message"] == sentence
        # a static file name too long for the file system is a file that is not there (it was an OSError, a 500)
        assert (await client.get("/static/" + "é" * 300)).status_code == 404
        assert await counts(center) == before  # nothing of any refused request was written
        # and what is fine still goes through: line breaks and tabs in a note, a cleared city
        note = await client.post(
            f"/api/customers/{bob.id}/notes", json={"body": "Line one\n\tLine two"}, headers=headers
        )
        assert note.status_code == 201
        changed = await client.post(f"/api/customers/{bob.id}", json={"city": "", "vip_tier": "gold"}, headers=headers)
        assert changed.status_code == 200, await changed.get_json()
        async with center.runtime.sessions() as session:
            stored = await session.get(Customer, bob.id)
            assert stored is not None and (stored.city, stored.vip_tier) == (None, "gold")
            assert await session.scalar(select(Note.body)) == "Line one\n\tLine two"


@pytest.mark.parametrize("kind", DATABASES)
async def test_a_form_field_with_a_nul_is_refused_before_sign_in(kind: str, tmp_path: Path) -> None:
    async with database_of_its_own(kind, tmp_path) as url, serve_app(url, tmp_path, users=("boss",)) as center:
        client, csrf = await center.client(None)
        response = await client.post(
            "/login",
            form={"csrf_token": csrf, "username": "boss\x00", "password": "x"},
            headers={"Accept": "text/html"},
        )
        assert response.status_code == 400
        assert "The form field username contains a control character (U+0000)." in await response.get_data(as_text=True)
        wrong = await client.post("/login", form={"csrf_token": csrf, "username": "boss", "password": "not it"})
        assert wrong.status_code == 401  # an ordinary wrong password is still just that
        # a forged CSRF token with non-ASCII characters is a forged token (it was a TypeError, a 500)
        forged = await client.post("/login", form={"csrf_token": "é", "username": "boss", "password": "x"})
        assert forged.status_code == 400
        boss, _ = await center.client("boss")
        api = await boss.post("/api/customers", json={"name": "X"}, headers={"X-CSRF-Token": "\u00e9"})
        assert api.status_code == 400
        assert (await api.get_json())["message"] == "The form expired; reload the page and try again."
