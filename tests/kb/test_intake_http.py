"""Tickets from outside over HTTP (SQLite and PostgreSQL): the public web form and its spam protection (honeypot,
signed time token, per-address limit, size limits), the same answer for known and unknown senders, and "Create
ticket" from an SMS conversation."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm_core.customers.models import Customer
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.db import utcnow
from crm_core.sms.models import SmsMessage
from crm_core.tickets.intake import form_token
from crm_core.tickets.models import Ticket, TicketLink, TicketMessage
from crm_core.users.models import User
from crm_core.users.service import SYSTEM
from sms_gateway.inbound import receive_sms
from tests.desktop.app_client import AppUnderTest, database_of_its_own, serve_app

DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SECRET = "test-secret-key-of-reasonable-length"  # the served app's (tests/desktop/app_client.py)


def _token(page: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


async def _tickets(center: AppUnderTest) -> list[Ticket]:
    async with center.runtime.sessions() as db:
        return list(await db.scalars(select(Ticket).order_by(Ticket.number)))


async def _customers(center: AppUnderTest) -> int:
    async with center.runtime.sessions() as db:
        return int(await db.scalar(select(func.count()).select_from(Customer)) or 0)


def _request(token: str, **fields: str) -> dict[str, str]:
    return {
        "form_token": token,
        "name": "Alice Example",
        "email": "alice@example.com",
        "phone": "",
        "subject": "My router blinks red",
        "message": "Since this morning.\nPlease call me.",
        "website": "",
        **fields,
    }


def _answer(page: str) -> str:
    """The page without what differs from request to request (the CSRF and form tokens)."""
    return re.sub(r'content="[^"]+"|value="[^"]+"|"X-CSRF-Token": "[^"]+"', "", page)


@pytest.mark.parametrize("kind", DATABASES)
async def test_the_public_form_creates_a_ticket_on_the_matched_or_a_new_customer(kind: str, tmp_path: Path) -> None:
    async with (
        database_of_its_own(kind, tmp_path) as url,
        serve_app(url, tmp_path, users=(), intake_min_seconds=0) as center,
    ):
        async with center.runtime.unit_of_work() as db:
            alice = await create_customer(
                session=db,
                actor=SYSTEM,
                region="US",
                data=CustomerIn(
                    name="Alice Example", emails=["alice@example.com"], phones=[PhoneIn(number="+15551230001")]
                ),
            )
        client = center.app.test_client()  # nobody signed in
        form = await client.get("/intake")
        assert form.status_code == 200 and 'name="website"' in await form.get_data(as_text=True)
        known = await client.post(
            "/intake", form=_request(_token(await form.get_data(as_text=True)), email="ALICE@example.com")
        )
        known_page = await known.get_data(as_text=True)
        assert known.status_code == 200 and "We received your request" in known_page
        customers = await _customers(center)
        unknown = await client.post(
            "/intake",
            form=_request(
                _token(await (await client.get("/intake")).get_data(as_text=True)),
                name="Zed Stranger",
                email="zed@example.org",
                phone="(555) 123-9999",
                subject="Refund",
            ),
        )
        # the same answer whether or not the sender is a customer: nothing tells an email is known
        assert unknown.status_code == 200 and _answer(await unknown.get_data(as_text=True)) == _answer(known_page)
        assert await _customers(center) == customers + 1
        first, second = await _tickets(center)
        assert (first.customer_id, first.subject, first.category) == (alice.id, "My router blinks red", "web form")
        async with center.runtime.sessions() as db:
            zed = await db.get(Customer, second.customer_id)
            assert zed is not None and zed.name == "Zed Stranger" and [p.e164 for p in zed.phones] == ["+15551239999"]
            said = list(await db.scalars(select(TicketMessage).where(TicketMessage.ticket_id == first.id)))
            assert [(m.kind, m.body) for m in said] == [("customer", "Since this morning.\nPlease call me.")]
        # matched by phone when the email is new
        by_phone = await client.post(
            "/intake",
            form=_request(
                _token(await (await client.get("/intake")).get_data(as_text=True)),
                email="",
                phone="+15551230001",
                subject="Again",
            ),
        )
        assert by_phone.status_code == 200 and (await _tickets(center))[-1].customer_id == alice.id


@pytest.mark.parametrize("kind", DATABASES)
async def test_spam_protection_and_bad_input_create_nothing(kind: str, tmp_path: Path) -> None:
    async with (
        database_of_its_own(kind, tmp_path) as url,
        serve_app(url, tmp_path, users=(), intake_min_seconds=30, intake_per_hour=8) as center,
    ):
        client = center.app.test_client()
        now = utcnow()
        aged = form_token(SECRET, now - timedelta(seconds=60))  # shown a minute ago: old enough
        customers = await _customers(center)
        # a bot fills the hidden field: thanked, nothing written
        bot = await client.post("/intake", form=_request(aged, website="http://spam.example"))
        assert bot.status_code == 200 and "We received your request" in await bot.get_data(as_text=True)
        cases = [
            (_request(_token(await (await client.get("/intake")).get_data(as_text=True))), 422, "That was quick"),
            (_request(form_token(SECRET, now - timedelta(days=1, minutes=1))), 422, "The form expired"),
            (_request(form_token("another-secret-key-of-some-length", now - timedelta(minutes=5))), 422, "expired"),
            (_request("12345.abcd.ffff"), 422, "expired"),
            (_request(aged, message="x" * 5001), 422, "message is longer than 5000"),
            (_request(aged, email="not-an-email"), 422, "email address does not look right"),
            (_request(aged, email="", phone=""), 422, "Give an email address or a phone number"),
        ]
        for fields, status, words in cases:
            response = await client.post("/intake", form=fields)
            page = await response.get_data(as_text=True)
            assert response.status_code == status and words in page, (fields, response.status_code)
            assert 'id="intake-form"' in page and fields["subject"] in page  # the form again, with what was typed
        assert await _tickets(center) == [] and await _customers(center) == customers
        # the limit: 8 a hour from one address, refused ones counted too
        refused = await client.post("/intake", form=_request(aged))
        assert refused.status_code == 429 and "Too many requests" in await refused.get_data(as_text=True)
        assert await _tickets(center) == []
        # control characters never get as far as the form's checks
        assert (await client.post("/intake", form=_request(aged, subject="a\x00b"))).status_code == 400


@pytest.mark.parametrize("kind", DATABASES)
async def test_create_ticket_from_an_sms_conversation(kind: str, tmp_path: Path) -> None:
    async with (
        database_of_its_own(kind, tmp_path) as url,
        serve_app(url, tmp_path, users=("agent1001", "agent2001")) as center,
    ):
        async with center.runtime.unit_of_work() as db:
            params = {"MessageSid": "SM1", "From": "+15551230001", "To": "+15550000100", "Body": "My parcel\nis late"}
            outcome = await receive_sms(session=db, params=params, region="US", queue="support", help_text="")
            params = {**params, "MessageSid": "SM2", "Body": "Order 77"}
            await receive_sms(session=db, params=params, region="US", queue="support", help_text="")
            owner = await db.scalar(select(User.id).where(User.username == "agent2001"))
        conversation_id = outcome.conversation_id
        http, token = await center.client("agent1001")
        made = await http.post(
            f"/sms/conversations/{conversation_id}/ticket", headers={"HX-Request": "true", "X-CSRF-Token": token}
        )
        assert made.status_code == 200
        [ticket] = await _tickets(center)
        assert made.headers["HX-Redirect"] == f"/tickets/{ticket.id}"
        assert (ticket.subject, ticket.category, ticket.team) == ("SMS: My parcel is late", "sms", "support")
        async with center.runtime.sessions() as db:
            links = set(await db.scalars(select(TicketLink.sms_id).where(TicketLink.ticket_id == ticket.id)))
            texts = set(await db.scalars(select(SmsMessage.id)))
            assert links == texts and len(texts) == 2
            said = list(await db.scalars(select(TicketMessage.body).where(TicketMessage.ticket_id == ticket.id)))
            assert sorted(said) == ["My parcel\nis late", "Order 77"]
        page = await (await http.get(f"/sms/conversations/{conversation_id}")).get_data(as_text=True)
        assert 'id="sms-ticket-form"' in page
        # someone else's conversation: refused, nothing created
        async with center.runtime.unit_of_work() as db:
            from crm_core.sms.models import SmsConversation

            conversation = await db.get(SmsConversation, conversation_id)
            assert conversation is not None
            conversation.assignee_id = owner
        refused = await http.post(f"/sms/conversations/{conversation_id}/ticket", headers={"X-CSRF-Token": token})
        assert refused.status_code == 403 and len(await _tickets(center)) == 1
