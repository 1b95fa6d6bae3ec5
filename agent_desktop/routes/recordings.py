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
    correct_transcript,
    flagged_calls,
    keywords,
    read_transcript,
    recording_backlog,
    remove_keyword,
    retry_failed_job,
    search_transcripts,
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
