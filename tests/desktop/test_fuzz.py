"""Hypothesis against every route of the app, on SQLite and on PostgreSQL: no request, however hostile, answers 500.

The routes come from the app's own url_map, the query arguments and JSON fields from the routes' source and the
input models, so a new route or field is fuzzed without being listed here. Values: text with NUL and other control
characters and lone surrogates, huge strings and numbers, wrong types, extra keys, nesting 100,000 deep. Signed in
as an admin (every role check passes, so the handlers really run); the routes that sign in or out, or change the
password, get clients of their own. Examples per database are bounded (profile `crm-fuzz`; CRM_FUZZ_PROFILE=
crm-fuzz-long for a long run) and their number is printed (with CRM_FUZZ_VERBOSE=1, the answers per route too)."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
from collections import Counter, defaultdict
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from quart.testing import QuartClient

import agent_desktop
from crm_core.calls.models import CallLog
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.users.service import SYSTEM
from tests.desktop.app_client import AppUnderTest, database_of_its_own, serve_app

settings.register_profile(
    "crm-fuzz",
    max_examples=250,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here is a failure on the next run too
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("crm-fuzz-long", settings.get_profile("crm-fuzz"), max_examples=5000)
PROFILE = settings.get_profile(os.environ.get("CRM_FUZZ_PROFILE", "crm-fuzz"))
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

# Routes that change who is signed in get a client of their own, so the admin's session lives through the run.
OWN_CLIENT = {"auth.login": "anonymous", "auth.logout": "anonymous", "auth.password": "agent1001"}
LINKEDID = "1700000400.1"


def _source_names(pattern: str) -> set[str]:
    names: set[str] = set()
    for path in Path(agent_desktop.__file__).parent.rglob("*.py"):
        names.update(re.findall(pattern, path.read_text(encoding="utf-8")))
    return names


def fields_read_by(view: Any) -> list[str]:
    """The JSON or form fields a view reads: `data.get("x")`, `form.get("x")`, and the fields of every input model
    it validates (`Model.model_validate`), found in its source."""
    view = inspect.unwrap(view)
    source = inspect.getsource(view)
    names = set(re.findall(r"(?:data|form)(?:\.get\(|\[)\s*[\"'](\w+)", source))
    for model_name in re.findall(r"(\w+)\.model_validate", source):
        model = view.__globals__.get(model_name)
        if isinstance(model, type) and issubclass(model, BaseModel):
            names.update(model.model_fields)
    return sorted(names)


QUERY_NAMES = sorted(_source_names(r"args\.get\(\s*[\"'](\w+)"))

# --- values ------------------------------------------------------------------------------------------------------

HOSTILE_CHARACTERS = ["\x00", "\r", "\n", "\t", "\x1b", "\x7f", "\x85", "\u2028", "\ufeff", "\u202e", "%", "/", "."]
# mostly text a person could type (so that requests reach the handlers), often text no person should send
benign_text = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=12)
hostile_text = st.text(st.characters(exclude_categories=["Cs"]) | st.sampled_from(HOSTILE_CHARACTERS), max_size=40)
huge_text = st.builds(lambda ch, n: ch * n, st.sampled_from(["x", "\x00", "é", "="]), st.integers(200, 120_000))
dates = st.sampled_from(["9999-12-31", "0001-01-01", "2026-02-30", "2026-12-01", "2025-12-01", "", "-1", "99999-01-01"])
numbers = st.integers(-(10**30), 10**30).map(str)
url_text = st.one_of(benign_text, dates, hostile_text, hostile_text, huge_text, numbers)
# JSON text may also carry lone surrogates ("\ud800"), which json.dumps escapes and the parser hands back
json_text = st.one_of(
    benign_text, benign_text, hostile_text, huge_text, st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**40), 10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    json_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)


@dataclass
class Known:
    """Values that exist in the database, so that some requests get past the "not found" answers."""

    customers: list[str] = field(default_factory=list)
    linkedids: list[str] = field(default_factory=lambda: [LINKEDID])


@dataclass(frozen=True)
class Route:
    endpoint: str
    method: str
    rule: str
    arguments: list[str]
    fields: list[str]  # the JSON or form fields its view reads


@dataclass(frozen=True)
class Attempt:
    endpoint: str
    method: str
    path: str
    query: list[tuple[str, str]]
    body: bytes | None
    content_type: str | None
    form: dict[str, str] | None
    csrf: str | None  # None: the token of the session; else the one sent instead ("" for none)

    def __repr__(self) -> str:  # what hypothesis prints of a failing example: short enough to read
        def cut(value: object) -> str:
            text = repr(value)
            return text if len(text) <= 300 else f"{text[:300]}… ({len(text)} characters)"

        return (
            f"Attempt({self.method} {cut(self.path)} query={cut(self.query)} body={cut(self.body)} "
            f"content_type={self.content_type!r} form={cut(self.form)} csrf={self.csrf})"
        )


# Each attempt is a request a person could send, spoiled in at most one place: most reach the handler with one
# hostile part, a third reach it untouched (so the handlers' own work, writing included, runs too).
FAULTS = ["none", "none", "none", "path", "query", "field", "extra field", "body", "csrf"]


def plausible(name: str, known: Known) -> st.SearchStrategy[Any]:
    """A value a person might send for the field or argument `name`: mostly right, sometimes wrong, of its kind."""
    phone = st.sampled_from(["+15551239876", "555-123-0077", "+44 20 7946 0958", "+1 555 123 0001", "12"])
    kinds: dict[str, st.SearchStrategy[Any]] = {
        "customer_id": st.sampled_from(known.customers),
        "merge_id": st.sampled_from(known.customers),
        "parent_id": st.sampled_from(known.customers),
        "linkedid": st.sampled_from(known.linkedids),
        "phone": phone,
        "number": phone,
        "phones": st.lists(phone, max_size=3),
        "email": st.sampled_from(["x@example.test", "Y@Example.test", "bad@", ""]),
        "emails": st.lists(st.sampled_from(["y@example.test", "bad@"]), max_size=2),
        "allow_duplicate": st.booleans(),
        "priority": st.sampled_from(["low", "normal", "high", "urgent", "asap"]),
        "country": st.sampled_from(["US", "fr", "", "USA", "ﬃ"]),
        "timezone": st.sampled_from(["Europe/Paris", "America/New_York", "", "Nowhere/City", "America", ".."]),
        "vip_tier": st.sampled_from(["gold", "", "platinum"]),
        "language": st.sampled_from(["en", "fr", ""]),
        "start": dates,
        "end": dates,
        "queue": st.sampled_from(["support", "sales", ""]),
        "agent": st.sampled_from(["1001", "2001", ""]),
        "username": st.sampled_from(["root", "agent1001", "nobody"]),
    }
    return kinds.get(name, benign_text)


@st.composite
def spoiled_body(draw: st.DrawFn) -> tuple[bytes, str]:
    shape = draw(st.sampled_from(["deep", "other json", "garbage", "random object"]))
    if shape == "deep":
        depth = draw(st.integers(30, 100_000))
        opening, closing = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return (opening * depth + "1" + closing * depth).encode(), "application/json"
    if shape == "garbage":
        return draw(st.binary(max_size=200)), draw(st.sampled_from(["application/json", "text/plain"]))
    if shape == "other json":
        return json.dumps(draw(json_values)).encode(), "application/json"
    return json.dumps(draw(st.dictionaries(hostile_text, json_values, max_size=6))).encode(), "application/json"


def attempts(routes: list[Route], known: Known) -> st.SearchStrategy[Attempt]:
    @st.composite
    def build(draw: st.DrawFn) -> Attempt:
        route = draw(st.sampled_from(routes))
        fault = draw(st.sampled_from(FAULTS))
        path = route.rule
        for argument in route.arguments:
            existing = {
                "customer_id": known.customers,
                "linkedid": known.linkedids,
                "filename": ["app.css", "vendor/socket.io.min.js", "nothing.css"],
            }.get(argument) or ["x"]
            value = draw(url_text if fault == "path" else st.sampled_from(existing))
            path = re.sub(rf"<(?:\w+:)?{argument}>", quote(value, safe="") or "x", path)
        query = [
            (name, str(draw(plausible(name, known))))
            for name in draw(st.lists(st.sampled_from(QUERY_NAMES), unique=True, max_size=len(QUERY_NAMES)))
        ]
        if fault == "query":
            name = draw(st.sampled_from(QUERY_NAMES) | hostile_text)
            query.append((name, draw(url_text)))
        fields = {name: draw(plausible(name, known)) for name in route.fields if draw(st.integers(0, 5))}
        if fault == "field" and route.fields:
            fields[draw(st.sampled_from(route.fields))] = draw(st.one_of(json_text, json_values))
        if fault == "extra field":
            fields[draw(st.sampled_from([*route.fields, "extra"]) | hostile_text)] = draw(json_values)
        body = content_type = form = None
        if route.method != "GET":
            if route.endpoint in OWN_CLIENT:  # a form
                form = {name: value if isinstance(value, str) else json.dumps(value) for name, value in fields.items()}
                form = {
                    name: "".join(c for c in value if not 0xD800 <= ord(c) <= 0xDFFF) for name, value in form.items()
                }
            elif fault == "body":
                body, content_type = draw(spoiled_body())
            else:
                body, content_type = json.dumps(fields).encode(), "application/json"
        csrf = draw(st.sampled_from(["", "forged", "é", "\u2603"]) | benign_text) if fault == "csrf" else None
        return Attempt(route.endpoint, route.method, path, query, body, content_type, form, csrf)

    return build()


async def attempt_once(
    center: AppUnderTest, clients: dict[str, tuple[QuartClient, str]], attempt: Attempt
) -> tuple[int, str]:
    who = OWN_CLIENT.get(attempt.endpoint, "root")
    client, csrf = clients[who]
    token = csrf if attempt.csrf is None else attempt.csrf
    headers = {"X-CSRF-Token": token.encode("utf-8").decode("latin-1")} if token else {}
    if attempt.content_type:
        headers["Content-Type"] = attempt.content_type
    form = attempt.form
    if form is not None and token:
        form = {"csrf_token": token, **form}
    response = await client.open(
        attempt.path,
        method=attempt.method,
        headers=headers,
        query_string=[(k.encode(), v.encode()) for k, v in attempt.query],
        data=attempt.body,
        form=form,
    )
    if who == "anonymous" and attempt.method == "POST":
        clients[who] = await center.client(None)  # a sign-out (or in) spent its session and CSRF token
    return response.status_code, await response.get_data(as_text=True)


async def prepare(center: AppUnderTest) -> tuple[dict[str, tuple[QuartClient, str]], Known]:
    known = Known()
    async with center.runtime.unit_of_work() as session:
        for name, number in (("Alice Example", "+15551230001"), ("Bob Example", "+15551230002")):
            customer = await create_customer(
                session=session, actor=SYSTEM, region="US", data=CustomerIn(name=name, phones=[PhoneIn(number=number)])
            )
            known.customers.append(customer.id)
        session.add(
            CallLog(
                linkedid=LINKEDID,
                direction="inbound",
                queue="support",
                agent="1001",
                offered_at=datetime.now(UTC),
                customer_id=known.customers[0],
                recording_ref="2026/12/01/1700000400.1.wav",
            )
        )
    clients = {
        name: await center.client(None if name == "anonymous" else name) for name in ("root", "anonymous", "agent1001")
    }
    return clients, known


def routes_of(center: AppUnderTest) -> list[Route]:
    routes = []
    for rule in center.app.url_map.iter_rules():
        view = center.app.view_functions[rule.endpoint]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append(Route(rule.endpoint, method, rule.rule, sorted(rule.arguments), fields_read_by(view)))
    return routes


@pytest.mark.parametrize("kind", DATABASES)
def test_no_request_answers_500(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loop = asyncio.new_event_loop()
    stack = AsyncExitStack()
    statuses: Counter[int] = Counter()
    reached: defaultdict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    try:
        url = loop.run_until_complete(stack.enter_async_context(database_of_its_own(kind, tmp_path)))
        center = loop.run_until_complete(
            stack.enter_async_context(serve_app(url, tmp_path, users=("root", "agent1001")))
        )
        clients, known = loop.run_until_complete(prepare(center))
        routes = routes_of(center)
        fields = {(r.endpoint, r.method): r.fields for r in routes}  # read from the views' source
        assert fields[("customers.api_create_customer", "POST")] == [
            *("allow_duplicate", "email", "linkedid", "name", "phone")
        ]
        assert fields[("calls.api_ticket_from_call", "POST")] == ["customer_id", "description", "priority", "subject"]

        @PROFILE
        @given(attempts(routes, known))
        def no_500(attempt: Attempt) -> None:
            status, text = loop.run_until_complete(attempt_once(center, clients, attempt))
            statuses[status] += 1
            reached[(attempt.endpoint, attempt.method)][status] += 1
            assert status < 500, (
                attempt.method,
                attempt.path[:200],
                attempt.query[:3],
                (attempt.body or b"")[:200],
                text[:500],
            )
            assert "Traceback" not in text

        no_500()
    finally:
        loop.run_until_complete(stack.aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    with capsys.disabled():
        print(
            f"\nfuzz on {kind}: {sum(statuses.values())} examples over {len(routes)} route methods, "
            f"answers {dict(sorted(statuses.items()))}"
        )
        if os.environ.get("CRM_FUZZ_VERBOSE"):
            for (endpoint, method), answers in sorted(reached.items()):
                print(f"  {method} {endpoint}: {dict(sorted(answers.items()))}")
    assert sum(statuses.values()) >= min(PROFILE.max_examples, 100)
