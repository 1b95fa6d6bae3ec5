"""A survey answered over Twilio Voice stays a survey: the next resync of the bridge does not count it abandoned."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from quart import Quart
from sqlalchemy import select

from agent_desktop.voice_webhooks import voice_blueprint
from crm_core.calls.events import CallsResynced
from crm_core.calls.models import CallLog
from crm_core.calls.reports import call_report
from crm_core.calls.service import SURVEY_ONLY, apply_call_event
from crm_core.db import unit_of_work
from crm_core.users.service import SYSTEM
from tests.ivr.conftest import make_ivr
from tests.ivr.test_twiml import BASE, TOKEN, post


async def test_a_twilio_survey_survives_the_next_resync(tmp_path: Path) -> None:
    live = await make_ivr(tmp_path)
    app = Quart(__name__)
    app.register_blueprint(
        voice_blueprint({"sample": live.flow}, live.server.crm, auth_token=TOKEN, public_base_url=BASE)
    )
    try:
        call = {"From": "+15551230003", "To": "+18005550100", "CallSid": "CA0100", "Digits": "5"}
        answer = await post(app.test_client(), f"/voice/sample?{urlencode({'node': 'survey'})}", call)
        assert answer.status_code == 200 and "Thank you." in await answer.get_data(as_text=True)
        resynced_at = datetime.now(UTC)
        async with unit_of_work(live.sessions) as session:
            await apply_call_event(
                session=session, event=CallsResynced(live_linkedids=(), resynced_at=resynced_at), region="US"
            )
        async with live.sessions() as session:
            log = await session.scalar(select(CallLog).where(CallLog.linkedid == "CA0100"))
            assert log is not None
            assert (log.survey_score, log.outcome, log.closed_at_resync) == (5, SURVEY_ONLY, False)
            assert log.ended_at is not None and log.ended_at <= resynced_at
            report = await call_report(
                session=session, actor=SYSTEM, start=log.offered_at, end=resynced_at.replace(microsecond=999999)
            )
            assert report.total.offered == 0 and report.total.abandoned == 0
    finally:
        await live.close()
