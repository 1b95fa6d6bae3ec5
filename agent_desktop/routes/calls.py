"""Calls: a ticket opened from a call, and the call's recording for the player."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from quart import Blueprint, current_app, send_file

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import STAFF, actor, json_body, runtime
from crm_core.calls.service import get_call, open_recording
from crm_core.errors import NotFound
from crm_core.tickets.service import create_ticket
from recordings.store import RecordingStore

blueprint = Blueprint("calls", __name__)


@blueprint.post("/api/calls/<linkedid>/ticket")
@roles_allowed(*STAFF, api=True)
async def api_ticket_from_call(linkedid: str) -> Any:
    data = await json_body()
    async with runtime().unit_of_work() as db:
        me = actor()
        call = await get_call(session=db, actor=me, linkedid=linkedid)  # only a call this agent answered
        ticket = await create_ticket(
            session=db,
            actor=me,
            subject=str(data.get("subject", "")).strip(),
            description=str(data.get("description", "")),
            customer_id=call.customer_id or data.get("customer_id") or None,
            priority=str(data.get("priority", "normal")),
            call_id=call.id,
        )
    return {"id": ticket.id, "number": ticket.number}, 201


@blueprint.get("/api/calls/<linkedid>/recording")
@roles_allowed(*STAFF, api=True)
async def api_call_recording(linkedid: str) -> Any:
    """The call's recording, for the player on the customer page. Whatever byte range is asked for, nothing is
    served before the listen is audited: open_recording audits the first request of a listen (any range) and knows
    the further ranges of that listen by its audit entry, not by what the request says."""
    recordings: RecordingStore = current_app.extensions["recordings"]
    async with runtime().unit_of_work() as db:
        call = await open_recording(session=db, actor=actor(), linkedid=linkedid)
        path = recordings.path_of(call.recording_ref or "")
        if path is None:  # raised inside the transaction: no file to hear, no listen audited
            raise NotFound("The recording has not reached the recordings store yet.", linkedid=linkedid)
    # read off the event loop and served from memory (a recording is ~1 MB a minute): Quart's file body can
    # leave its file open when a player drops a range request half-way
    audio = await asyncio.to_thread(path.read_bytes)
    response = await send_file(io.BytesIO(audio), mimetype=recordings.media_type(path), conditional=True)
    response.headers["Cache-Control"] = "private, no-store"
    return response
