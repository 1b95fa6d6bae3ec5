"""Calls: a ticket opened from a call, and the call's recording for the player."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, Response, current_app, request
from werkzeug.datastructures import ContentRange

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
    response = _byte_range_of(audio, recordings.media_type(path))
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _byte_range_of(audio: bytes, media_type: str) -> Response:
    """The whole recording, or the one byte range asked for (206), or 416 when it cannot be satisfied. Done here:
    Quart's conditional file response answers a suffix range (`bytes=-500`, the last 500 bytes) with a 500."""
    asked = request.range
    if asked is None:
        response = Response(audio, mimetype=media_type)
    else:
        span = asked.range_for_length(len(audio)) if asked.units == "bytes" else None
        if span is None:  # another unit, several ranges, or beyond the end
            response = Response(b"", status=416)
            response.headers["Content-Range"] = f"bytes */{len(audio)}"
            return response
        start, stop = span
        response = Response(audio[start:stop], status=206, mimetype=media_type)
        response.content_range = ContentRange("bytes", start, stop, len(audio))
    response.headers["Accept-Ranges"] = "bytes"
    return response
