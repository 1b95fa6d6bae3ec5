"""Calls: a ticket opened from a call, and the call's recording for the player."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, Response, current_app, render_template, request
from werkzeug.datastructures import ContentRange

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import STAFF, actor, json_body, runtime
from crm_core.calls.followups import mark_handled, missed_calls
from crm_core.calls.service import get_call, open_recording
from crm_core.calls.wrapups import save_draft
from crm_core.errors import NotFound, ValidationFailed
from crm_core.recordings.models import RecordingStatus
from crm_core.recordings.service import stored_recording
from crm_core.tickets.service import create_ticket
from recordings.store import RecordingArchive, RecordingStore

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
        stored = await stored_recording(session=db, call_id=call.id)
        if stored is not None and stored.status == RecordingStatus.DELETED:  # its queue's retention ran out
            raise NotFound("This recording was deleted under its queue's retention rule.", linkedid=linkedid)
        if stored is not None and stored.storage_key:  # taken into the store: the checked copy is heard
            archive: RecordingArchive = current_app.extensions["recording_archive"]
            path = await asyncio.to_thread(archive.local_path, stored.storage_key) or path
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


@blueprint.get("/missed-calls")
@roles_allowed(*STAFF)
async def missed_calls_page() -> Any:
    """Abandoned and unanswered calls to call back, per queue and per agent."""
    queue = request.args.get("queue") or None
    agent = request.args.get("agent") or None
    async with runtime().sessions() as db:
        calls = await missed_calls(session=db, actor=actor(), queue=queue, agent=agent)
    return await render_template("missed_calls.html", calls=calls, args=request.args)


@blueprint.post("/api/missed-calls/handled")
@roles_allowed(*STAFF, api=True)
async def api_mark_handled() -> Any:
    data = await json_body()
    ids = data.get("call_ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) and len(i) <= 32 for i in ids)):
        raise ValidationFailed("call_ids must be a list of call ids.", field="call_ids")
    async with runtime().unit_of_work() as db:
        marked = await mark_handled(session=db, actor=actor(), call_ids=ids, everything=data.get("all") is True)
    return {"marked": marked}


@blueprint.post("/missed-calls/handled")
@roles_allowed(*STAFF, api=True)
async def handled_partial() -> Any:
    """The page's buttons: mark one missed call (or all) handled, answer with the list as it is now."""
    form = await request.form
    queue = request.args.get("queue") or None
    agent = request.args.get("agent") or None
    call_id = form.get("call_id", "")
    if len(call_id) > 32:
        raise ValidationFailed("call_id is not a call id.", field="call_id")
    async with runtime().unit_of_work() as db:
        await mark_handled(
            session=db, actor=actor(), call_ids=[call_id] if call_id else None, everything=form.get("all") == "1"
        )
    async with runtime().sessions() as db:
        calls = await missed_calls(session=db, actor=actor(), queue=queue, agent=agent)
    return await render_template("missed_calls_list.html", calls=calls)


@blueprint.post("/calls/<linkedid>/wrap-up-draft")
@roles_allowed(*STAFF, api=True)
async def save_wrapup_draft(linkedid: str) -> Any:
    """The wrap-up form as the agent types (htmx, a moment after each change): kept so a reload loses nothing."""
    form = await request.form
    async with runtime().unit_of_work() as db:
        await save_draft(
            session=db,
            actor=actor(),
            linkedid=linkedid,
            disposition_code=form.get("disposition", ""),
            notes=form.get("notes", ""),
        )
    return "", 204
