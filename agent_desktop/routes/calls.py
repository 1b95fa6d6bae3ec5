"""Calls: a ticket opened from a call, and the call's recording for the player."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from quart import Blueprint, current_app, render_template, request, send_file
from sqlalchemy import select

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import STAFF, actor, json_body, runtime
from crm_core.calls.followups import mark_handled, missed_calls
from crm_core.calls.models import CallLog
from crm_core.calls.service import open_recording
from crm_core.calls.wrapups import save_draft
from crm_core.errors import NotFound, ValidationFailed
from crm_core.tickets.service import create_ticket
from recordings.store import RecordingStore

blueprint = Blueprint("calls", __name__)


@blueprint.post("/api/calls/<linkedid>/ticket")
@roles_allowed(*STAFF, api=True)
async def api_ticket_from_call(linkedid: str) -> Any:
    data = await json_body()
    async with runtime().unit_of_work() as db:
        call = await db.scalar(select(CallLog).where(CallLog.linkedid == linkedid))
        ticket = await create_ticket(
            session=db,
            actor=actor(),
            subject=str(data.get("subject", "")).strip(),
            description=str(data.get("description", "")),
            customer_id=(call.customer_id if call else None) or data.get("customer_id") or None,
            priority=str(data.get("priority", "normal")),
            call_id=call.id if call else None,
        )
    return {"id": ticket.id, "number": ticket.number}, 201


@blueprint.get("/api/calls/<linkedid>/recording")
@roles_allowed(*STAFF, api=True)
async def api_call_recording(linkedid: str) -> Any:
    """The call's recording, for the player on the customer page; each listen is audited (not each byte range
    the player asks for as it seeks)."""
    recordings: RecordingStore = current_app.extensions["recordings"]
    first_request = request.range is None or all(start == 0 for start, _ in request.range.ranges)
    async with runtime().unit_of_work() as db:
        call = await open_recording(session=db, actor=actor(), linkedid=linkedid, audit=first_request)
        path = recordings.path_of(call.recording_ref or "")
        if path is None:  # raised inside the transaction: no file to hear, no listen audited
            raise NotFound("The recording has not reached the recordings store yet.", linkedid=linkedid)
    # read off the event loop and served from memory (a recording is ~1 MB a minute): Quart's file body can
    # leave its file open when a player drops a range request half-way
    audio = await asyncio.to_thread(path.read_bytes)
    response = await send_file(io.BytesIO(audio), mimetype=recordings.media_type(path), conditional=True)
    response.headers["Cache-Control"] = "private, no-store"
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
