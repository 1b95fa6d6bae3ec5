"""The IVR survey, over real FastAGI from a simulated Asterisk, scores the resolved ticket linked to the call."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from crm_core.calls.events import CallDirection, CallOffered
from crm_core.calls.models import CallLog
from crm_core.calls.service import apply_call_event
from crm_core.db import unit_of_work, utcnow
from crm_core.tickets.csat_models import TicketCsat
from crm_core.tickets.models import Ticket
from crm_core.tickets.service import create_ticket, update_ticket
from crm_core.users.service import SYSTEM
from tests.ivr.asterisk import SimulatedCall
from tests.ivr.conftest import make_ivr

LINKEDID = "1795462442.0"  # what the simulated Asterisk answers for CHANNEL(linkedid)


async def test_the_survey_over_fastagi_scores_the_linked_resolved_ticket(tmp_path: Path) -> None:
    ivr = await make_ivr(tmp_path)
    try:
        async with unit_of_work(ivr.sessions) as session:
            await apply_call_event(
                session=session,
                event=CallOffered(
                    linkedid=LINKEDID,
                    direction=CallDirection.INBOUND,
                    caller_number="+15551230003",  # type: ignore[arg-type]
                    caller_name="",
                    callee_number="100",
                    queue="support",
                    position=1,
                    offered_at=utcnow(),
                ),
                region="US",
            )
            call = await session.scalar(select(CallLog).where(CallLog.linkedid == LINKEDID))
            assert call is not None
            ticket = await create_ticket(
                session=session,
                actor=SYSTEM,
                subject="Fixed on the call",
                customer_id=ivr.ids["carol"],
                call_id=call.id,
            )
            await update_ticket(session=session, actor=SYSTEM, ticket_id=ticket.id, status="resolved")
        run = await SimulatedCall("+15551230003", script="sample/survey", keys=["7", "4"]).run(ivr.port)
        assert run.hung_up
        async with ivr.sessions() as session:
            rows = list(await session.scalars(select(TicketCsat).join(Ticket, Ticket.id == TicketCsat.ticket_id)))
            scored = [(r.ticket_id, r.status, r.score, r.channel) for r in rows if r.status == "answered"]
            assert scored == [(ticket.id, "answered", 4, "ivr")]  # the other resolved ticket (no call) is not scored
            log = await session.scalar(select(CallLog).where(CallLog.linkedid == LINKEDID))
            assert log is not None and log.survey_score == 4
    finally:
        await ivr.close()
