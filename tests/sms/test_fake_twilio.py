"""The fake Twilio behaves like Twilio to the real SDK: auth checked, SIDs and JSON returned, errors raised."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from sms_gateway.twilio_provider import BasicAuthHttpClient
from tests.fakes.twilio_api import FakeTwilio


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    twilio = FakeTwilio()
    await twilio.start()
    try:
        yield twilio
    finally:
        await twilio.stop()


def sdk_client(fake: FakeTwilio, token: str | None = None) -> tuple[Client, BasicAuthHttpClient]:
    http = BasicAuthHttpClient()
    client = Client(fake.account_sid, token or fake.auth_token, http_client=http)
    client.api.base_url = fake.base_url
    return client, http


async def test_the_sdk_creates_a_message_and_gets_a_sid(fake: FakeTwilio) -> None:
    client, http = sdk_client(fake)
    try:
        message = await client.messages.create_async(to="+15551230001", from_="+15550000001", body="Hello")
    finally:
        await http.close()
    assert message.sid is not None and message.sid.startswith("SM") and len(message.sid) == 34
    assert message.status == "queued"
    assert message.to == "+15551230001"
    assert fake.sent_to("+15551230001")[0]["body"] == "Hello"


async def test_a_wrong_auth_token_is_refused_with_401(fake: FakeTwilio) -> None:
    client, http = sdk_client(fake, token="not-the-token")
    try:
        with pytest.raises(TwilioRestException) as refused:
            await client.messages.create_async(to="+15551230001", from_="+15550000001", body="Hello")
    finally:
        await http.close()
    assert refused.value.status == 401 and refused.value.code == 20003
    assert fake.accepted == []


@pytest.mark.parametrize(("code", "status"), [(21610, 400), (21211, 400), (20429, 429)])
async def test_errors_on_demand_per_destination(fake: FakeTwilio, code: int, status: int) -> None:
    fake.refuse("+15551230009", code, times=1)
    client, http = sdk_client(fake)
    try:
        with pytest.raises(TwilioRestException) as refused:
            await client.messages.create_async(to="+15551230009", from_="+15550000001", body="Hi")
        again = await client.messages.create_async(to="+15551230009", from_="+15550000001", body="Hi")
    finally:
        await http.close()
    assert (refused.value.status, refused.value.code) == (status, code)
    assert again.sid is not None


async def test_status_callbacks_are_signed_with_the_auth_token(fake: FakeTwilio) -> None:
    from aiohttp import web

    received: list[tuple[str, dict[str, str], str]] = []

    async def status(request: web.Request) -> web.Response:
        received.append((str(request.url), dict(await request.post()), request.headers["X-Twilio-Signature"]))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/status", status)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.deliver_as("+15551230005", "undelivered", 30003)
    client, http = sdk_client(fake)
    try:
        await client.messages.create_async(
            to="+15551230005", from_="+15550000001", body="Hi", status_callback=f"http://127.0.0.1:{port}/status"
        )
        await fake.settle()
    finally:
        await http.close()
        await runner.cleanup()
    assert [params["MessageStatus"] for _, params, _ in received] == ["queued", "sent", "undelivered"]
    assert received[-1][1]["ErrorCode"] == "30003"
    validator = RequestValidator(fake.auth_token)
    assert all(validator.validate(url, params, signature) for url, params, signature in received)
    assert not RequestValidator("another-token").validate(received[0][0], received[0][1], received[0][2])
