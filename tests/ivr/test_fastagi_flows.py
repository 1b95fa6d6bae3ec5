"""The sample flow driven over TCP the way Asterisk drives FastAGI: every node type, caller identification,
self-service ticket status, callbacks, surveys, and callers hanging up mid-flow."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm_core.calls.models import CallbackRequest, CallLog
from ivr.flow import parse_flow
from tests.ivr.asterisk import SimulatedCall
from tests.ivr.conftest import Ivr, make_ivr


async def test_vip_caller_is_identified_and_routed_to_the_priority_queue(ivr: Ivr) -> None:
    call = await SimulatedCall("+15551230001").run(ivr.port)
    assert call.variables["CRM_CUSTOMER_ID"] == ivr.ids["alice"]
    assert call.variables["CRM_VIP"] == "gold" and call.variables["CRM_SEGMENT"] == "vip"
    assert call.variables["TARGET_QUEUE"] == "support" and call.variables["QUEUE_PRIO"] == "10"
    assert call.variables["CRM_PATH"] == "hours>identify>vip>to-priority"
    assert not any(c.startswith("GET DATA") for c in call.commands)  # a VIP is not made to press anything


async def test_caller_with_an_open_ticket_is_offered_it_first(ivr: Ivr) -> None:
    call = await SimulatedCall("+15551230002", keys=["1"]).run(ivr.port)
    assert f'SAY NUMBER {ivr.ids["ticket"]} ""' in call.commands
    assert 'STREAM FILE ticket-status-open ""' in call.commands
    assert call.variables["CRM_TICKET"] == str(ivr.ids["ticket"]) and call.variables["TARGET_QUEUE"] == "support"
    assert call.variables["CRM_CHOICES"] == "ticket=1"


async def test_unknown_caller_language_menu_and_ticket_status_self_service(ivr: Ivr) -> None:
    keys = ["2", "3", str(ivr.ids["resolved"]), ""]  # Spanish, ticket status, the ticket number, then nothing
    call = await SimulatedCall("+15559990000", keys=keys).run(ivr.port)
    assert 'SET VARIABLE CHANNEL(language) "es"' in call.commands
    assert f'SAY NUMBER {ivr.ids["resolved"]} ""' in call.commands
    assert 'STREAM FILE ticket-status-resolved ""' in call.commands
    assert call.played()[-1] == "goodbye" and call.hung_up
    assert "CRM_CUSTOMER_ID" not in call.variables


async def test_wrong_ticket_number_is_said_so_and_asked_again(ivr: Ivr) -> None:
    call = await SimulatedCall("+15559990000", keys=["1", "3", "424242", str(ivr.ids["ticket"]), "1"]).run(ivr.port)
    assert 'STREAM FILE ticket-not-found ""' in call.commands
    assert call.variables["CRM_TICKET"] == str(ivr.ids["ticket"]) and call.variables["TARGET_QUEUE"] == "support"


async def test_menu_invalid_input_and_timeouts(ivr: Ivr) -> None:
    # Carol (known, no open ticket) presses 9, then nothing twice: after the retries the menu's fallback applies
    call = await SimulatedCall("+15551230003", keys=["9", "", ""]).run(ivr.port)
    assert 'STREAM FILE option-is-invalid ""' in call.commands and 'STREAM FILE please-try-again ""' in call.commands
    assert call.played().count("main-menu") == 3
    assert call.variables["TARGET_QUEUE"] == "support"  # invalid: to-support
    valid = await SimulatedCall("+15551230003", keys=["2"]).run(ivr.port)
    assert valid.variables["TARGET_QUEUE"] == "sales" and valid.variables["CRM_CHOICES"] == "main=2"


async def test_closed_hours_and_holidays_go_to_voicemail(tmp_path: Path) -> None:
    for moment in ("2026-11-29T15:00:00+00:00", "2026-12-25T15:00:00+00:00", "2026-11-24T03:00:00+00:00"):
        folder = tmp_path / moment[:13].replace(":", "")
        folder.mkdir()
        live = await make_ivr(folder, now=datetime.fromisoformat(moment))
        try:
            call = await SimulatedCall("+15551230003").run(live.port)
            assert 'STREAM FILE we-are-closed ""' in call.commands, moment
            assert 'EXEC VoiceMail "100@default,u"' in call.commands and call.hung_up
        finally:
            await live.close()


async def test_callback_request_is_stored_once_confirmed(ivr: Ivr) -> None:
    call = await SimulatedCall("+15551230003", keys=["4", "1"]).run(ivr.port)
    assert call.variables["CRM_CALLBACK"] == "requested" and call.hung_up
    async with ivr.sessions() as session:
        [request] = (await session.scalars(select(CallbackRequest))).all()
    assert (request.number, request.queue, request.status, request.customer_id) == (
        "+15551230003",
        "support",
        "pending",
        ivr.ids["carol"],
    )
    assert request.origin_linkedid == "1795462442.0"
    # asking again while one is pending does not queue a second call
    await SimulatedCall("+15551230003", keys=["4", "1"]).run(ivr.port)
    async with ivr.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CallbackRequest)) == 1


async def test_post_call_survey_is_stored_on_the_call_log(ivr: Ivr) -> None:
    call = await SimulatedCall("+15551230003", script="sample/survey", keys=["7", "5"]).run(ivr.port)
    assert "GET VARIABLE CHANNEL(linkedid)" in call.commands and call.hung_up
    async with ivr.sessions() as session:
        log = await session.scalar(select(CallLog).where(CallLog.linkedid == "1795462442.0"))
    assert log is not None and log.survey_score == 5


@pytest.mark.parametrize("how", ["HANGUP", "-1", "close"])
async def test_hanging_up_mid_flow_leaves_nothing_half_written(ivr: Ivr, how: str) -> None:
    # asked for a callback (4), gone at the "press 1 to confirm" question
    callback = SimulatedCall("+15551230003", keys=["4"], hang_up_at="GET DATA press-1-for-callback", hang_up_how=how)
    await callback.run(ivr.port)
    # gone at the survey question
    survey = SimulatedCall("+15551230003", script="sample/survey", hang_up_at="GET DATA survey", hang_up_how=how)
    await survey.run(ivr.port)
    assert callback.hung_up and survey.hung_up
    assert "HANGUP" not in callback.commands  # the server noticed and stopped talking to a dead line
    async with ivr.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CallbackRequest)) == 0
        assert await session.scalar(select(func.count()).select_from(CallLog)) == 0


async def test_unknown_script_and_early_disconnect(ivr: Ivr) -> None:
    call = await SimulatedCall("+15551230003", script="nosuchflow").run(ivr.port)
    assert call.commands == ['STREAM FILE an-error-has-occurred ""', "HANGUP"]
    reader, writer = await asyncio.open_connection("127.0.0.1", ivr.port)
    writer.write(b"agi_network: yes\n")  # and the PBX drops the call before the rest
    writer.close()
    await writer.wait_closed()
    after = await SimulatedCall("+15551230001").run(ivr.port)  # the server goes on serving
    assert after.variables["TARGET_QUEUE"] == "support"
    del reader


SMALL_FLOW = """
start: greet
nodes:
  greet: {type: play, prompt: hello, next: account}
  account: {type: read_digits, prompt: enter-account, variable: CRM_ACCOUNT, max_digits: 6, next: mark}
  mark: {type: set, variable: CRM_REASON, value: billing, next: route}
  route: {type: queue, queue: billing}
"""


async def test_play_read_digits_and_set_nodes(tmp_path: Path) -> None:
    flow = parse_flow(SMALL_FLOW, name="small")
    live = await make_ivr(tmp_path, flow=flow)
    try:
        call = await SimulatedCall("+15551230003", script="small", keys=["123456"]).run(live.port)
        assert call.commands[0] == 'STREAM FILE hello ""' and call.commands[1] == "GET DATA enter-account 6000 6"
        assert call.variables["CRM_ACCOUNT"] == "123456" and call.variables["CRM_REASON"] == "billing"
        assert call.variables["TARGET_QUEUE"] == "billing"
    finally:
        await live.close()
