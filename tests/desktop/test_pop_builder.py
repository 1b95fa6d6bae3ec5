"""PopBuilder at shutdown: the web app closes it (and the caller-ID lookup) while the PBX may still start calls until
telephony stops; those calls get a pop with the number only, and no error is logged."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_desktop.pop import PopBuilder
from crm_core.calls.events import AgentRinging, CallDirection, CallStarted
from crm_core.customers.lookup import CallerIdLookup
from crm_core.db import make_sessionmaker, unit_of_work, utcnow
from tests.core.helpers import make_customer


async def test_a_call_started_after_close_pops_the_number_without_asking_the_closed_lookup(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    async with unit_of_work(make_sessionmaker(engine)) as session:
        await make_customer(session, "Closing Time", "+14155550199")
    lookup = CallerIdLookup(engine, region="US")
    pops = PopBuilder(lookup)
    before = await pops.for_ringing(_ringing("before"))
    assert before["customer"] is not None and before["customer"]["name"] == "Closing Time"  # the lookup works
    await pops.close()
    await lookup.close()
    caplog.set_level(logging.ERROR, logger="agent_desktop.pop")
    pops.started(CallStarted("after", CallDirection.INBOUND, "+14155550199", "", utcnow()))
    after = await pops.for_ringing(_ringing("after"))
    assert after["number"] == "+14155550199" and after["customer"] is None
    assert after["agent"] == "1001"
    assert not caplog.records  # before the fix: "could not build the pop …" with a traceback, for every such call


def _ringing(linkedid: str) -> AgentRinging:
    return AgentRinging(linkedid, "1001", "PJSIP/1001-00000001", "support", "+14155550199", "", 0.0, utcnow())
