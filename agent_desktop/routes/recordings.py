"""Recordings and transcripts: the transcript search page, and a call's transcript beside its player."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, render_template, request, url_for
from sqlalchemy import select

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import STAFF, actor, runtime
from crm_core.errors import ValidationFailed
from crm_core.recordings.models import JobKind, RecordingJob
from crm_core.recordings.service import (
    add_keyword,
    call_transcription,
    correct_transcript,
    flagged_calls,
    keywords,
    legal_holds,
    place_legal_hold,
    queue_policies,
    read_transcript,
    recording_backlog,
    release_legal_hold,
    remove_keyword,
    retry_failed_job,
    search_transcripts,
    set_call_transcription,
    set_queue_transcription,
    set_retention,
)
from crm_core.users.models import Role

blueprint = Blueprint("recordings", __name__)
MAX_QUERY = 200


@blueprint.get("/transcripts")
@roles_allowed(*STAFF)
async def transcript_search() -> Any:
    """Search the transcripts this person may read (all of them, or one customer's)."""
    query = request.args.get("q", "").strip()[:MAX_QUERY]
    customer_id = request.args.get("customer") or None
    hits = None
    if query:
        async with runtime().unit_of_work() as db:
            hits = await search_transcripts(session=db, actor=actor(), query=query, customer_id=customer_id)
    words = {w.lower() for w in query.split()}
    return await render_template("recordings/search.html", query=query, customer_id=customer_id, hits=hits, words=words)


@blueprint.get("/calls/<linkedid>/transcript")
@roles_allowed(*STAFF)
async def call_transcript(linkedid: str) -> Any:
    """The call's transcript (read audited) with its player; `t` is where the player starts (a search hit's word)."""
    try:
        start = max(0.0, float(request.args.get("t", "0") or 0))
    except ValueError:
        raise ValidationFailed("t must be a number of seconds into the recording.", field="t") from None
    async with runtime().unit_of_work() as db:
        found = await read_transcript(session=db, actor=actor(), linkedid=linkedid)
        transcription = await call_transcription(session=db, actor=actor(), linkedid=linkedid)
        job = None
        if found.transcript is None and found.recording is not None:
            job = await db.scalar(
                select(RecordingJob)
                .where(RecordingJob.recording_id == found.recording.id, RecordingJob.kind == JobKind.TRANSCRIBE.value)
                .order_by(RecordingJob.created_at.desc())
                .limit(1)
            )
    return await render_template(
        "recordings/transcript.html",
        call=found.call,
        recording=found.recording,
        transcript=found.transcript,
        job=job,
        start=start,
        transcription=transcription,
    )


@blueprint.get("/admin/recordings")
@roles_allowed()
async def backlog() -> Any:
    """Admins: the ingest and transcription backlog (refreshed by htmx), failed jobs with their reason, retry."""
    async with runtime().sessions() as db:
        found = await recording_backlog(session=db, actor=actor())
    partial = request.headers.get("HX-Request") == "true"
    return await render_template(
        "recordings/backlog_table.html" if partial else "recordings/backlog.html", backlog=found
    )


@blueprint.post("/admin/recordings/<job_id>/retry")
@roles_allowed(api=True)
async def retry_job(job_id: str) -> Any:
    async with runtime().unit_of_work() as db:
        await retry_failed_job(session=db, actor=actor(), job_id=job_id)
    async with runtime().sessions() as db:
        found = await recording_backlog(session=db, actor=actor())
    return await render_template("recordings/backlog_table.html", backlog=found)


# --- supervisors: phrases that flag calls ------------------------------------------------------------------------


async def _keywords_view(template: str) -> Any:
    async with runtime().sessions() as db:
        me = actor()
        phrases = await keywords(session=db, actor=me)
        flagged = await flagged_calls(session=db, actor=me)
    return await render_template(template, phrases=phrases, flagged=flagged)


WALLBOARD_FLAGGED = 20  # the latest flagged calls the wallboard lists


async def wallboard_flagged_calls() -> list[Any]:
    """The wallboard's list of flagged calls (newest first), for its first render and its live refresh."""
    async with runtime().sessions() as db:
        return await flagged_calls(session=db, actor=actor(), limit=WALLBOARD_FLAGGED)


@blueprint.get("/wallboard/flagged")
@roles_allowed(Role.SUPERVISOR, api=True)
async def wallboard_flagged() -> Any:
    """The wallboard's flagged-call section again (htmx asks when a phrase is heard live)."""
    return await render_template("recordings/wallboard_flagged.html", flagged=await wallboard_flagged_calls())


@blueprint.get("/keywords")
@roles_allowed(Role.SUPERVISOR)
async def keyword_page() -> Any:
    """The phrases supervisors listen for, and the calls they were heard on (newest first)."""
    return await _keywords_view("recordings/keywords.html")


@blueprint.post("/keywords")
@roles_allowed(Role.SUPERVISOR, api=True)
async def add_keyword_phrase() -> Any:
    form = await request.form
    async with runtime().unit_of_work() as db:
        await add_keyword(session=db, actor=actor(), phrase=str(form.get("phrase", "")))
    return await _keywords_view("recordings/keywords_list.html")


@blueprint.post("/keywords/<keyword_id>/delete")
@roles_allowed(Role.SUPERVISOR, api=True)
async def remove_keyword_phrase(keyword_id: str) -> Any:
    async with runtime().unit_of_work() as db:
        await remove_keyword(session=db, actor=actor(), keyword_id=keyword_id)
    return await _keywords_view("recordings/keywords_list.html")


@blueprint.post("/calls/<linkedid>/transcript")
@roles_allowed(Role.SUPERVISOR, api=True)
async def correct_call_transcript(linkedid: str) -> Any:
    """A supervisor corrects the transcript's text (the recogniser's is kept); the page shows it again."""
    form = await request.form
    async with runtime().unit_of_work() as db:
        await correct_transcript(session=db, actor=actor(), linkedid=linkedid, text=str(form.get("text", "")))
    # htmx loads the page again (the corrected text and the audit with it)
    return "", 204, {"HX-Redirect": url_for("recordings.call_transcript", linkedid=linkedid)}


# --- admins: retention and transcription per queue -----------------------------------------------------------------


async def _policies_view(template: str) -> Any:
    async with runtime().sessions() as db:
        policies = await queue_policies(session=db, actor=actor())
    return await render_template(template, policies=policies)


@blueprint.get("/admin/recordings/rules")
@roles_allowed()
async def policies_page() -> Any:
    """Admins: per queue, how long recordings are kept and whether calls are transcribed."""
    return await _policies_view("recordings/policies.html")


def _switch(value: object) -> bool:
    if str(value) not in ("on", "off"):
        raise ValidationFailed("transcribe must be on or off.", field="transcribe")
    return str(value) == "on"


@blueprint.post("/admin/recordings/retention")
@roles_allowed(api=True)
async def set_queue_retention() -> Any:
    form = await request.form
    raw = str(form.get("days", "")).strip()
    try:
        days = int(raw) if raw else None
    except ValueError:
        raise ValidationFailed("Days must be a whole number (empty: keep for ever).", field="days") from None
    async with runtime().unit_of_work() as db:
        await set_retention(session=db, actor=actor(), queue=str(form.get("queue", "")), days=days)
    return await _policies_view("recordings/policies_table.html")


@blueprint.post("/admin/recordings/transcription")
@roles_allowed(api=True)
async def set_queue_transcription_switch() -> Any:
    form = await request.form
    on = _switch(form.get("transcribe", ""))
    async with runtime().unit_of_work() as db:
        await set_queue_transcription(session=db, actor=actor(), queue=str(form.get("queue", "")), on=on)
    return await _policies_view("recordings/policies_table.html")


# --- supervisors: legal holds ------------------------------------------------------------------------------------


async def _holds_view(template: str) -> Any:
    async with runtime().sessions() as db:
        holds = await legal_holds(session=db, actor=actor())
    return await render_template(template, holds=holds)


@blueprint.get("/legal-holds")
@roles_allowed(Role.SUPERVISOR)
async def holds_page() -> Any:
    """The legal holds in force; place one on a customer or a call, release one."""
    return await _holds_view("recordings/holds.html")


@blueprint.post("/legal-holds")
@roles_allowed(Role.SUPERVISOR, api=True)
async def place_hold() -> Any:
    form = await request.form
    what, target = str(form.get("what", "")), str(form.get("target", "")).strip()
    if what not in ("call", "customer"):
        raise ValidationFailed("Hold a call or a customer.", field="what")
    if not target or len(target) > 64:
        raise ValidationFailed("Give the id of the call or customer to hold.", field="target")
    async with runtime().unit_of_work() as db:
        await place_legal_hold(
            session=db,
            actor=actor(),
            reason=str(form.get("reason", "")),
            customer_id=target if what == "customer" else None,
            linkedid=target if what == "call" else None,
        )
    return await _holds_view("recordings/holds_list.html")


@blueprint.post("/legal-holds/<hold_id>/release")
@roles_allowed(Role.SUPERVISOR, api=True)
async def release_hold(hold_id: str) -> Any:
    async with runtime().unit_of_work() as db:
        await release_legal_hold(session=db, actor=actor(), hold_id=hold_id)
    return await _holds_view("recordings/holds_list.html")


# --- consent: the caller declines transcription ------------------------------------------------------------------


@blueprint.post("/calls/<linkedid>/transcription")
@roles_allowed(*STAFF, api=True)
async def set_call_transcription_switch(linkedid: str) -> Any:
    """The agent who answered (or a supervisor) switches transcription off for this call: the caller declined."""
    form = await request.form
    on = _switch(form.get("transcribe", ""))
    async with runtime().unit_of_work() as db:
        now_on = await set_call_transcription(session=db, actor=actor(), linkedid=linkedid, on=on)
    return await render_template("recordings/consent.html", linkedid=linkedid, transcription=now_on)
