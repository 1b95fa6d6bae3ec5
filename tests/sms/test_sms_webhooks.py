"""SMS end to end over real HTTP: the app's webhooks signed like Twilio, the agents' replies sent by the outbox with
the real twilio SDK to the fake Twilio, its status callbacks and error codes acted on."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from crm_core.customers.models import Customer
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.sms.models import SmsConsentChange, SmsConversation
from crm_core.users.service import SYSTEM
from tests.fakes.twilio_api import new_sid, sign
from tests.sms.live import SENDER, SmsCenter, start_sms_center

# one center for the module (starting one costs a second); each test texts from numbers of its own
pytestmark = pytest.mark.asyncio(loop_scope="module")
_numbers = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def center(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SmsCenter]:
    live = await start_sms_center(tmp_path_factory.mktemp("sms"))
    try:
        yield live
    finally:
        await live.stop()


def fresh_number() -> str:
    return f"+1555200{next(_numbers):04d}"


async def new_customer(center: SmsCenter, name: str = "Alice Example") -> tuple[str, str]:
    """A customer with a number no other test uses: (customer id, number)."""
    number = fresh_number()
    async with center.runtime.unit_of_work() as session:
        customer = await create_customer(
            session=session, actor=SYSTEM, region="US", data=CustomerIn(name=name, phones=[PhoneIn(number=number)])
        )
    return customer.id, number


async def reply(center: SmsCenter, username: str, conversation_id: str, body: str) -> tuple[int, dict[str, Any]]:
    return await center.post_as(username, f"/sms/conversations/{conversation_id}/reply", {"body": body})


async def test_a_text_opens_a_conversation_on_the_customer_and_the_reply_is_delivered(center: SmsCenter) -> None:
    customer_id, number = await new_customer(center)
    assert await center.text_in("Hi, my router is broken", from_=number) == 200
    conversation = await center.conversation_of(number)
    assert conversation.customer_id == customer_id
    assert (conversation.status, conversation.queue, conversation.unread) == ("open", "support", 1)
    status, _ = await reply(center, "agent1001", conversation.id, "Sorry to hear that! Calling you now.")
    assert status == 200
    await center.twilio.wait_for(lambda fake: fake.sent_to(number))
    sent = center.twilio.sent_to(number)[0]
    assert (sent["from"], sent["body"]) == (SENDER, "Sorry to hear that! Calling you now.")
    messages = await center.wait_message(lambda ms: ms[-1].status == "delivered", number)
    outbound = messages[-1]
    assert outbound.provider_sid == sent["sid"] and outbound.direction == "outbound"
    callbacks = [c for c in center.twilio.callbacks if c["To"] == number]
    assert [c["MessageStatus"] for c in callbacks] == ["queued", "sent", "delivered"]
    assert all(c["answer"] == 204 for c in callbacks)
    conversation = await center.conversation_of(number)
    assert conversation.assignee_id == center.users["agent1001"]  # answering took it


async def test_a_second_text_continues_the_open_conversation(center: SmsCenter) -> None:
    _customer_id, number = await new_customer(center)
    await center.text_in("First", from_=number)
    await center.text_in("Second", from_=number)
    async with center.runtime.sessions() as session:
        conversations = list(await session.scalars(select(SmsConversation).where(SmsConversation.number == number)))
    assert len(conversations) == 1 and conversations[0].unread == 2


async def test_an_unknown_number_becomes_a_new_contact(center: SmsCenter) -> None:
    number = fresh_number()
    assert await center.text_in("Who is this?", from_=number) == 200
    conversation = await center.conversation_of(number)
    async with center.runtime.sessions() as session:
        customer = await session.get(Customer, conversation.customer_id)
    assert customer is not None and customer.name == f"Unknown {number}"
    assert [p.e164 for p in customer.phones] == [number]


@pytest.mark.parametrize(
    ("status", "code", "ours"), [("undelivered", 30003, "unreachable"), ("failed", 30005, "unknown_number")]
)
async def test_a_delivery_failure_is_recorded_with_its_code(
    center: SmsCenter, status: str, code: int, ours: str
) -> None:
    _customer_id, number = await new_customer(center)
    center.twilio.deliver_as(number, status, code)
    await center.text_in("Hello", from_=number)
    await reply(center, "agent1001", (await center.conversation_of(number)).id, "Are you there?")
    messages = await center.wait_message(lambda ms: ms[-1].status == status, number)
    assert (messages[-1].provider_error, messages[-1].error_code) == (code, ours)


async def test_a_send_refused_with_21610_opts_the_number_out(center: SmsCenter) -> None:
    customer_id, number = await new_customer(center)
    await center.text_in("Hello", from_=number)
    conversation = await center.conversation_of(number)
    center.twilio.refuse(number, 21610)
    await reply(center, "agent1001", conversation.id, "Hi!")
    messages = await center.wait_message(lambda ms: ms[-1].status == "opted_out", number)
    assert (messages[-1].error_code, messages[-1].provider_error) == ("opted_out", 21610)
    async with center.runtime.sessions() as session:
        customer = await session.get(Customer, customer_id)
        changes = list(await session.scalars(select(SmsConsentChange).where(SmsConsentChange.number == number)))
    assert customer is not None and customer.sms_opt_out is True
    assert [(c.opted_out, c.source, c.detail) for c in changes] == [(True, "provider", "21610")]
    # nothing more is even tried: the agent is told why
    status, answer = await reply(center, "agent1001", conversation.id, "Hello again?")
    assert status == 409 and answer["code"] == "opted_out"
    assert [r for r in center.twilio.refused if r[0] == number] == [(number, 21610)]


async def test_an_invalid_number_21211_fails_with_the_reason(center: SmsCenter) -> None:
    _customer_id, number = await new_customer(center)
    await center.text_in("Hello", from_=number)
    center.twilio.refuse(number, 21211)
    await reply(center, "agent1001", (await center.conversation_of(number)).id, "Hi!")
    messages = await center.wait_message(lambda ms: ms[-1].status == "failed", number)
    assert (messages[-1].error_code, messages[-1].provider_error) == ("invalid_number", 21211)
    assert messages[-1].error_detail is not None and "not a valid phone number" in messages[-1].error_detail
    assert messages[-1].attempts == 1


async def test_throttling_20429_slows_down_and_retries(center: SmsCenter) -> None:
    _customer_id, number = await new_customer(center)
    await center.text_in("Hello", from_=number)
    center.twilio.refuse(number, 20429, times=2)
    await reply(center, "agent1001", (await center.conversation_of(number)).id, "Hi!")
    messages = await center.wait_message(lambda ms: ms[-1].status == "delivered", number)
    assert [r for r in center.twilio.refused if r[0] == number] == [(number, 20429), (number, 20429)]
    assert len(center.twilio.sent_to(number)) == 1
    assert messages[-1].attempts == 3


async def test_unsigned_or_forged_webhooks_are_refused(center: SmsCenter) -> None:
    number = fresh_number()
    url = f"{center.base_url}/sms/inbound"
    params = {"MessageSid": new_sid("SM"), "From": number, "To": SENDER, "Body": "STOP", "AccountSid": "AC1"}
    assert await center.twilio.post_signed(url, params, signature="") == 403
    forged = sign("not-the-auth-token", url, params)
    assert await center.twilio.post_signed(url, params, signature=forged) == 403
    other_url = sign(center.twilio.auth_token, "https://elsewhere.example/sms/inbound", params)
    assert await center.twilio.post_signed(url, params, signature=other_url) == 403
    tampered = sign(center.twilio.auth_token, url, {**params, "Body": "hello"})
    assert await center.twilio.post_signed(url, params, signature=tampered) == 403
    status_url = f"{center.base_url}/sms/status"
    callback = {"MessageSid": new_sid("SM"), "MessageStatus": "delivered"}
    assert await center.twilio.post_signed(status_url, callback, signature="") == 403
    assert await center.messages(number) == []
    async with center.runtime.sessions() as session:
        assert list(await session.scalars(select(SmsConsentChange).where(SmsConsentChange.number == number))) == []
    assert await center.twilio.post_signed(url, params) == 200  # the same, signed: taken
    assert [m.body for m in await center.messages(number)] == ["STOP"]


async def test_a_retried_message_sid_is_stored_once(center: SmsCenter) -> None:
    number = fresh_number()
    sid = new_sid("SM")
    assert await center.text_in("Only once", from_=number, sid=sid) == 200
    assert await center.text_in("Only once", from_=number, sid=sid) == 200
    messages = await center.messages(number)
    assert [(m.provider_sid, m.body) for m in messages] == [(sid, "Only once")]
    assert (await center.conversation_of(number)).unread == 1


async def test_a_new_text_reaches_every_agent_live(center: SmsCenter) -> None:
    number = fresh_number()
    agent = await center.agent_socket("agent1002")
    try:
        await center.text_in("Anyone there?", from_=number)
        conversation = await center.conversation_of(number)

        async def arrived() -> dict[str, object]:
            while True:
                for event, data in agent.received:  # type: ignore[attr-defined]
                    if event == "sms_received" and data["number"] == number:
                        return data  # type: ignore[no-any-return]
                agent.arrived.clear()  # type: ignore[attr-defined]
                await agent.arrived.wait()  # type: ignore[attr-defined]

        event = await asyncio.wait_for(arrived(), 10)
    finally:
        await agent.disconnect()
    assert event["conversation_id"] == conversation.id and event["body"] == "Anyone there?"


# (texts in order, opted out afterwards, the keyword changes recorded)
KEYWORD_CASES = [
    (["STOP"], True, ["STOP"]),
    (["stop"], True, ["STOP"]),
    (["  Stop!  "], True, ["STOP"]),
    (["Stop. Thank you"], True, ["STOP"]),
    (["STOPALL"], True, ["STOPALL"]),
    (["unsubscribe"], True, ["UNSUBSCRIBE"]),
    (["Cancel"], True, ["CANCEL"]),
    (["END"], True, ["END"]),
    (["quit."], True, ["QUIT"]),
    (["Revoke"], True, ["REVOKE"]),
    (["OPTOUT"], True, ["OPTOUT"]),
    (["Please stop calling me at work every single day"], False, []),
    (["stopping by later"], False, []),
    (["End of the month I will call you back"], False, []),
    (["STOP", "START"], False, ["STOP", "START"]),
    (["STOP", "unstop"], False, ["STOP", "UNSTOP"]),
    (["STOP", "stop"], True, ["STOP"]),  # no change, nothing more recorded
    (["STOP", "Hello?"], True, ["STOP"]),
    (["HELP"], False, []),
]


@pytest.mark.parametrize(("texts", "opted_out_after", "recorded"), KEYWORD_CASES)
async def test_opt_out_keywords(
    center: SmsCenter, texts: list[str], opted_out_after: bool, recorded: list[str]
) -> None:
    customer_id, number = await new_customer(center)
    for text in texts:
        assert await center.text_in(text, from_=number) == 200
    async with center.runtime.sessions() as session:
        customer = await session.get(Customer, customer_id)
        changes = list(
            await session.scalars(
                select(SmsConsentChange).where(SmsConsentChange.number == number).order_by(SmsConsentChange.at)
            )
        )
    assert customer is not None and customer.sms_opt_out is opted_out_after
    assert [(c.detail, c.source, c.customer_id) for c in changes] == [(w, "keyword", customer_id) for w in recorded]


async def test_help_is_answered_with_the_help_text(center: SmsCenter) -> None:
    number = fresh_number()
    await center.text_in("help", from_=number)
    await center.twilio.wait_for(lambda fake: fake.sent_to(number))
    assert "Reply STOP to opt out" in center.twilio.sent_to(number)[0]["body"]


async def test_whose_conversation_it_is_decides_who_answers_assigns_and_closes(center: SmsCenter) -> None:
    _customer_id, number = await new_customer(center)
    await center.text_in("Hello", from_=number)
    conversation = await center.conversation_of(number)
    path = f"/sms/conversations/{conversation.id}"
    assert (await center.post_as("agent1001", f"{path}/reply", {"body": "Hi, Agent 1001 here"}))[0] == 200
    status, answer = await center.post_as("agent1002", f"{path}/reply", {"body": "Me too"})
    assert (status, answer["code"]) == (403, "permission_denied")
    status, answer = await center.post_as("agent1002", f"{path}/assign", {"assignee_id": "me"})
    assert (status, answer["code"]) == (403, "permission_denied")  # taking another agent's conversation
    status, _ = await center.post_as("boss", f"{path}/assign", {"assignee_id": center.users["agent1002"]})
    assert status == 200
    assert (await center.post_as("agent1002", f"{path}/reply", {"body": "Agent 1002 now"}))[0] == 200
    status, answer = await center.post_as("agent1002", f"{path}/reply", {"body": "   "})
    assert (status, answer["code"]) == (422, "validation_failed")
    assert (await center.post_as("agent1002", f"{path}/close", {}))[0] == 200
    status, answer = await center.post_as("agent1002", f"{path}/reply", {"body": "After closing"})
    assert (status, answer["code"]) == (409, "conversation_closed")
    await center.twilio.wait_for(lambda fake: len(fake.sent_to(number)) == 2)
    assert [m["body"] for m in center.twilio.sent_to(number)] == ["Hi, Agent 1001 here", "Agent 1002 now"]
    await center.text_in("One more thing", from_=number)  # a closed conversation stays closed: a new one opens
    async with center.runtime.sessions() as session:
        found = list(await session.scalars(select(SmsConversation).where(SmsConversation.number == number)))
    assert sorted(c.status for c in found) == ["closed", "open"]


async def test_the_customer_page_shows_the_conversation_and_each_opt_out_change(center: SmsCenter) -> None:
    customer_id, number = await new_customer(center, name="Carol <b>Example</b>")
    await center.text_in("Is my <script>order</script> late?", from_=number)
    await center.text_in("Stop. Thank you", from_=number)
    await center.text_in("START", from_=number)
    http, _token = await center.client("agent1001")
    async with http.get(f"{center.base_url}/sms/customers/{customer_id}") as response:
        assert response.status == 200
        section = await response.text()
    assert "Is my &lt;script&gt;order&lt;/script&gt; late?" in section  # escaped
    assert "opted out (replied STOP)" in " ".join(section.split())
    assert "opted back in (replied START)" in " ".join(section.split())
    async with http.get(f"{center.base_url}/customers/{customer_id}") as response:
        page = await response.text()
    assert f'hx-get="/sms/customers/{customer_id}"' in page


async def test_a_marketer_runs_a_campaign_through_the_api(center: SmsCenter) -> None:
    first_id, first = await new_customer(center, name="Mia Market")
    second_id, second = await new_customer(center, name="Max Market")
    opted_id, opted = await new_customer(center, name="Otto Out")
    await center.text_in("STOP", from_=opted)
    payload: dict[str, Any] = {
        "name": "Spring sale",
        "template": "Hi {first_name}, spring sale starts today!",
        "customer_ids": [first_id, second_id, opted_id, first_id],
        "quiet_start_hour": 0,
        "quiet_end_hour": 0,
    }
    status, answer = await center.post_as("agent1001", "/api/sms/campaigns", payload)
    assert (status, answer["code"]) == (403, "forbidden")
    status, answer = await center.post_as("mkt", "/api/sms/campaigns", {**payload, "template": "Hi {first_name"})
    assert (status, answer["code"]) == (422, "validation_failed")
    status, answer = await center.post_as("mkt", "/api/sms/campaigns", payload)
    assert status == 201 and answer["recipients"] == {"pending": 2, "opted_out": 1}
    campaign_id = answer["id"]
    status, answer = await center.post_as("mkt", f"/api/sms/campaigns/{campaign_id}/start", {})
    assert (status, answer["status"]) == (200, "running")
    await center.twilio.wait_for(lambda fake: fake.sent_to(first) and fake.sent_to(second))
    assert [m["body"] for m in center.twilio.sent_to(first)] == ["Hi Mia, spring sale starts today!"]
    assert center.twilio.sent_to(opted) == []
    http, _token = await center.client("mkt")

    async def delivered() -> dict[str, Any]:
        while True:
            async with http.get(f"{center.base_url}/api/sms/campaigns/{campaign_id}") as response:
                progress: dict[str, Any] = await response.json()
            if progress["recipients"].get("delivered") == 2:
                return progress
            await asyncio.sleep(0.05)

    progress = await asyncio.wait_for(delivered(), 10)
    assert progress["status"] == "done" and progress["recipients"] == {"delivered": 2, "opted_out": 1}
    status, answer = await center.post_as("mkt", f"/api/sms/campaigns/{campaign_id}/pause", {})
    assert (status, answer["code"]) == (409, "conflict")
