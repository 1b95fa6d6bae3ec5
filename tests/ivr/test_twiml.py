"""The sample flow as TwiML through the signed Twilio webhook: the same steps, and forged requests refused."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from quart import Quart
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from agent_desktop.voice_webhooks import voice_blueprint
from crm_core.calls.models import CallbackRequest, CallLog
from tests.ivr.conftest import make_ivr

TOKEN = "twilio-auth-token-for-tests"
BASE = "https://crm.example.org"


def signed(url: str, form: dict[str, str]) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, form)}


async def post(client: object, path: str, form: dict[str, str], *, sign: bool = True, forge: bool = False):  # type: ignore[no-untyped-def]
    headers = signed(f"{BASE}{path}", form) if sign else {}
    if forge:
        headers = signed(f"{BASE}{path}", {**form, "From": "+15550000000"})
    return await client.post(path, form=form, headers=headers)  # type: ignore[attr-defined]


def follow(twiml: str) -> tuple[ET.Element, str | None]:
    root = ET.fromstring(twiml)
    gather = root.find("Gather")
    action = gather.get("action") if gather is not None else None
    return root, (urlsplit(action).path + "?" + urlsplit(action).query) if action else None


async def test_the_sample_flow_over_signed_webhooks(tmp_path: Path) -> None:
    live = await make_ivr(tmp_path)
    app = Quart(__name__)
    app.register_blueprint(
        voice_blueprint({"sample": live.flow}, live.server.crm, auth_token=TOKEN, public_base_url=BASE)
    )
    client = app.test_client()
    try:
        call = {"From": "+15551230003", "To": "+18005550100", "CallSid": "CA0001"}
        first = await post(client, "/voice/sample", call)
        assert first.status_code == 200
        root, action = follow(await first.get_data(as_text=True))
        assert root.find("Gather/Say").text.startswith("For support press 1")  # type: ignore[union-attr]
        assert action is not None and "node=main-menu" in action
        # press 3: ticket status, then the ticket number
        second = await post(client, action, {**call, "Digits": "3"})
        root, action = follow(await second.get_data(as_text=True))
        assert "ticket number" in root.find("Gather/Say").text  # type: ignore[union-attr]
        third = await post(client, action, {**call, "Digits": str(live.ids["resolved"])})
        text = await third.get_data(as_text=True)
        assert f"Ticket {live.ids['resolved']} is resolved." in text
        # a VIP goes straight to the queue, as over AGI
        vip = await post(client, "/voice/sample", {**call, "From": "+15551230001", "CallSid": "CA0002"})
        assert ET.fromstring(await vip.get_data(as_text=True)).find("Enqueue").text == "support"  # type: ignore[union-attr]
        # callback: menu 4, then 1
        menu = await post(client, "/voice/sample", {**call, "CallSid": "CA0003"})
        _, action = follow(await menu.get_data(as_text=True))
        ask = await post(client, action, {**call, "CallSid": "CA0003", "Digits": "4"})
        _, action = follow(await ask.get_data(as_text=True))
        done = await post(client, action, {**call, "CallSid": "CA0003", "Digits": "1"})
        assert "call you back" in await done.get_data(as_text=True)
        # the survey, stored under the CallSid
        query = urlencode({"node": "survey"})
        survey = await post(client, f"/voice/sample?{query}", {**call, "CallSid": "CA0004", "Digits": "4"})
        assert survey.status_code == 200
        async with live.sessions() as session:
            [request] = (await session.scalars(select(CallbackRequest))).all()
            assert request.number == "+15551230003" and request.origin_linkedid == "CA0003"
            log = await session.scalar(select(CallLog).where(CallLog.linkedid == "CA0004"))
            assert log is not None and log.survey_score == 4
    finally:
        await live.close()


async def test_forged_and_unsigned_webhooks_are_refused(tmp_path: Path) -> None:
    live = await make_ivr(tmp_path)
    app = Quart(__name__)
    app.register_blueprint(
        voice_blueprint({"sample": live.flow}, live.server.crm, auth_token=TOKEN, public_base_url=BASE)
    )
    unconfigured = Quart("unconfigured")
    unconfigured.register_blueprint(
        voice_blueprint({"sample": live.flow}, live.server.crm, auth_token=None, public_base_url=BASE)
    )
    try:
        call = {"From": "+15551230003", "CallSid": "CA0009", "Digits": "1", "node": "survey"}
        client = app.test_client()
        assert (await post(client, "/voice/sample?node=survey", call, sign=False)).status_code == 403
        assert (await post(client, "/voice/sample?node=survey", call, forge=True)).status_code == 403
        # a signature for another URL (a replay against another flow or node) does not fit this one
        other = signed(f"{BASE}/voice/other", call)
        assert (await client.post("/voice/sample?node=survey", form=call, headers=other)).status_code == 403
        assert (await post(unconfigured.test_client(), "/voice/sample", call)).status_code == 503
        assert (await post(client, "/voice/nosuchflow", call)).status_code == 404
        async with live.sessions() as session:
            assert await session.scalar(select(CallLog)) is None  # nothing a forged request asked for was done
    finally:
        await live.close()
