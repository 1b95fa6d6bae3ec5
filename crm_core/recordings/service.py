"""Recording jobs (found, claimed, retried with backoff, finished once), stored recordings and transcripts, and who
may read a transcript (the agents who answered the call, supervisors, admins; every read audited)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.calls.models import CallLeg, CallLog
from crm_core.calls.service import check_call_access, get_call
from crm_core.customers.models import Customer
from crm_core.db import new_id, record_event, utcnow
from crm_core.errors import CrmError, NotFound, ValidationFailed
from crm_core.recordings.events import KeywordHeard, RecordingFailed, RecordingStored, TranscriptStored
from crm_core.recordings.models import (
    CallKeywordHit,
    JobKind,
    JobStatus,
    KeywordPhrase,
    LegalHold,
    Recording,
    RecordingJob,
    RecordingStatus,
    RetentionRule,
    Transcript,
    TranscriptionOptOut,
)
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

# calls that ended longer ago than this are not looked at for new recordings (they were, when they ended)
DISCOVERY_WINDOW = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    job_id: str
    token: str
    kind: str
    attempts: int
    seen_size: int | None
    recording_id: str
    call_id: str
    linkedid: str
    source_ref: str
    storage_key: str | None
    layout: str | None


async def discover_recordings(*, session: AsyncSession, now: datetime | None = None) -> int:
    """A recording row and its ingest job for every ended call whose recording the PBX reported and that has
    none yet. Safe with several workers: the recording's call is unique, a second insert is skipped."""
    now = now or utcnow()
    found = await session.execute(
        select(CallLog.id, CallLog.recording_ref)
        .outerjoin(Recording, Recording.call_id == CallLog.id)
        .where(
            CallLog.recording_ref.is_not(None),
            CallLog.ended_at.is_not(None),
            CallLog.ended_at >= now - DISCOVERY_WINDOW,
            Recording.id.is_(None),
        )
        .limit(500)
    )
    created = 0
    for call_id, ref in found:
        recording = Recording(id=new_id(), call_id=call_id, source_ref=str(ref)[:255])
        try:
            async with session.begin_nested():
                session.add(recording)
        except IntegrityError:  # another worker found it first (unique call); its row stands
            continue
        session.add(RecordingJob(recording_id=recording.id, kind=JobKind.INGEST.value, due_at=now))
        created += 1
    await session.flush()
    return created


# the reason a job carries when its worker stopped mid-job (killed, out of memory) and its lease ran out
LEASE_LOST_REASON = "The worker stopped during this job (killed or crashed) before it finished."


async def claim_job(
    *,
    session: AsyncSession,
    kind: JobKind,
    worker: str,
    lease_s: float,
    now: datetime | None = None,
    max_attempts: int | None = None,
) -> ClaimedJob | None:
    """The next due job of `kind`, or one whose worker stopped renewing its lease (it died), now ours for
    `lease_s`. Row locks with SKIP LOCKED on PostgreSQL, so several workers never take the same job.

    A lease that ran out is a failed attempt: a file that kills its worker every time is tried `max_attempts`
    times in all and then failed with its reason, instead of taking the workers down for ever."""
    now = now or utcnow()
    due = and_(RecordingJob.status == JobStatus.QUEUED.value, RecordingJob.due_at <= now)
    abandoned = and_(RecordingJob.status == JobStatus.WORKING.value, RecordingJob.lease_until < now)
    query = (
        select(RecordingJob)
        .where(RecordingJob.kind == kind.value, due | abandoned)
        .order_by(RecordingJob.due_at)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    while True:
        job = await session.scalar(query)
        if job is None:
            return None
        lost = job.status == JobStatus.WORKING.value  # its worker died: that attempt counts
        attempts = job.attempts + 1 if lost else job.attempts
        given_up = lost and max_attempts is not None and attempts >= max_attempts
        token = new_id()
        values: dict[str, Any] = (
            {
                "status": JobStatus.FAILED.value,
                "claim_token": None,
                "lease_until": None,
                "finished_at": now,
                "reason": f"{LEASE_LOST_REASON} Given up after {attempts} attempts.",
            }
            if given_up
            else {
                "status": JobStatus.WORKING.value,
                "claim_token": token,
                "claimed_by": worker[:100],
                "lease_until": now + timedelta(seconds=lease_s),
            }
        )
        if lost:
            values["attempts"] = attempts
            values.setdefault("reason", LEASE_LOST_REASON)
        claimed = await session.execute(
            update(RecordingJob)
            .where(
                RecordingJob.id == job.id,
                RecordingJob.status == job.status,
                RecordingJob.claim_token.is_not_distinct_from(job.claim_token),
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]  # SQLite: another process took it between the look and the update
            return None
        row = (
            await session.execute(
                select(Recording, CallLog.linkedid)
                .join(CallLog, CallLog.id == Recording.call_id)
                .where(Recording.id == job.recording_id)
            )
        ).one()
        recording: Recording = row[0]
        if given_up:
            if job.kind == JobKind.INGEST.value:
                await session.execute(
                    update(Recording)
                    .where(Recording.id == recording.id)
                    .values(status=RecordingStatus.FAILED.value, reason=values["reason"][:500])
                )
                record_event(session, RecordingFailed(recording.id, str(row[1]), values["reason"], now))
            await session.refresh(job)
            continue  # the next due job, if any
        return ClaimedJob(
            job_id=job.id,
            token=token,
            kind=job.kind,
            attempts=attempts,
            seen_size=job.seen_size,
            recording_id=recording.id,
            call_id=recording.call_id,
            linkedid=str(row[1]),
            source_ref=recording.source_ref,
            storage_key=recording.storage_key,
            layout=recording.layout,
        )


async def renew_lease(*, session: AsyncSession, job: ClaimedJob, lease_s: float) -> bool:
    """Keep the job ours; False when it is not ours any more (taken over after our lease ran out)."""
    result = await session.execute(
        update(RecordingJob)
        .where(RecordingJob.id == job.job_id, RecordingJob.claim_token == job.token)
        .values(lease_until=utcnow() + timedelta(seconds=lease_s))
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def _finish(session: AsyncSession, job: ClaimedJob, **values: Any) -> bool:
    """Close the job if it is still ours: the one place a job ends, so it ends once."""
    result = await session.execute(
        update(RecordingJob)
        .where(
            RecordingJob.id == job.job_id,
            RecordingJob.claim_token == job.token,
            RecordingJob.status == JobStatus.WORKING.value,
        )
        .values(claim_token=None, lease_until=None, **values)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def postpone_job(*, session: AsyncSession, job: ClaimedJob, after_s: float, seen_size: int | None = None) -> bool:
    """Look again later without counting a failed attempt (a file still being written)."""
    return await _finish(
        session,
        job,
        status=JobStatus.QUEUED.value,
        due_at=utcnow() + timedelta(seconds=after_s),
        seen_size=seen_size,
    )


async def retry_or_fail_job(
    *, session: AsyncSession, job: ClaimedJob, reason: str, retry_s: float, max_attempts: int
) -> str:
    """A failed attempt: queued again after retry_s·2^(attempts-1), or failed for good after max_attempts. The
    reason is kept on the job and on the recording (for an ingest). Returns the job's new status."""
    attempts = job.attempts + 1
    now = utcnow()
    final = attempts >= max_attempts
    status = JobStatus.FAILED if final else JobStatus.QUEUED
    if not await _finish(
        session,
        job,
        status=status.value,
        attempts=attempts,
        reason=reason[:500],
        due_at=now + timedelta(seconds=retry_s * 2 ** (attempts - 1)),
        finished_at=now if final else None,
    ):
        return "lost"
    if job.kind == JobKind.INGEST.value:
        values: dict[str, Any] = {"reason": reason[:500]}
        if final:
            values["status"] = RecordingStatus.FAILED.value
            record_event(session, RecordingFailed(job.recording_id, job.linkedid, reason, now))
        await session.execute(update(Recording).where(Recording.id == job.recording_id).values(**values))
    return status.value


async def store_recording(
    *,
    session: AsyncSession,
    job: ClaimedJob,
    storage_key: str,
    layout: str,
    audio_format: str,
    channels: int,
    sample_rate: int,
    duration_s: float,
    size_bytes: int,
    sha256: str,
    transcribe: bool,
    skip_queues: frozenset[str] = frozenset(),
) -> bool:
    """The recording is in storage: its facts on its row, its ingest job done, and (unless transcription is off)
    its transcription job queued. False (nothing written) when the job was taken over meanwhile."""
    now = utcnow()
    if not await _finish(session, job, status=JobStatus.DONE.value, attempts=job.attempts + 1, finished_at=now):
        return False
    await session.execute(
        update(Recording)
        .where(Recording.id == job.recording_id)
        .values(
            status=RecordingStatus.STORED.value,
            reason=None,
            storage_key=storage_key,
            layout=layout,
            audio_format=audio_format,
            channels=channels,
            sample_rate=sample_rate,
            duration_s=duration_s,
            size_bytes=size_bytes,
            sha256=sha256,
            stored_at=now,
        )
    )
    if transcribe and await transcription_wanted(session=session, call_id=job.call_id, skip_queues=skip_queues):
        session.add(RecordingJob(recording_id=job.recording_id, kind=JobKind.TRANSCRIBE.value, due_at=now))
    record_event(session, RecordingStored(job.recording_id, job.linkedid, duration_s, now))
    return True


# The IVR sets this channel variable to "no" when the caller declines to be transcribed (the recording stays).
DECLINE_VARIABLE = "CRM_TRANSCRIBE"
_DECLINED = {"no", "n", "0", "false", "off", "declined"}


async def transcription_wanted(*, session: AsyncSession, call_id: str, skip_queues: frozenset[str]) -> bool:
    """Whether a call's recording is transcribed: not in a queue where transcription is off (settings, or an
    admin's switch), not when the caller declined (CRM_TRANSCRIBE=no set in the IVR, or the agent's switch)."""
    row = (await session.execute(select(CallLog.queue, CallLog.ivr_vars).where(CallLog.id == call_id))).one()
    if row[0] is not None and row[0] in skip_queues:
        return False
    switched_off = select(TranscriptionOptOut.id).where(
        (TranscriptionOptOut.call_id == call_id)
        | (TranscriptionOptOut.queue.is_not(None) & (TranscriptionOptOut.queue == row[0]))
    )
    if await session.scalar(switched_off.limit(1)) is not None:
        return False  # switched off in the UI: for this call (the caller declined) or for its queue (an admin)
    return str((row[1] or {}).get(DECLINE_VARIABLE, "")).strip().lower() not in _DECLINED


async def store_transcript(
    *,
    session: AsyncSession,
    job: ClaimedJob,
    lines: list[dict[str, Any]],
    model: str,
    audio_s: float,
    took_s: float,
) -> Transcript | None:
    """The transcript of the job's recording, written with the job's end in one transaction; None (nothing
    written) when the job is no longer ours: a transcript is stored once."""
    now = utcnow()
    if not await _finish(session, job, status=JobStatus.DONE.value, attempts=job.attempts + 1, finished_at=now):
        return None
    transcript = Transcript(
        recording_id=job.recording_id,
        call_id=job.call_id,
        text=" ".join(line["text"] for line in lines if line.get("text")),
        lines=lines,
        model=model[:200],
        audio_s=audio_s,
        took_s=took_s,
        created_at=now,
    )
    session.add(transcript)
    await session.flush()
    call = (await session.execute(select(CallLog.customer_id, CallLog.agent).where(CallLog.id == job.call_id))).one()
    record_event(session, TranscriptStored(transcript.id, job.recording_id, job.linkedid, call[0], now))
    for phrase, speaker, at_s in await _phrases_heard(session, lines):
        session.add(
            CallKeywordHit(call_id=job.call_id, transcript_id=transcript.id, phrase=phrase, speaker=speaker, at_s=at_s)
        )
        record_event(session, KeywordHeard(job.linkedid, phrase, speaker, at_s, call[0], call[1], now))
    return transcript


async def _phrases_heard(session: AsyncSession, lines: list[dict[str, Any]]) -> list[tuple[str, str | None, float]]:
    """(phrase, speaker, where) of each supervisors' phrase said in `lines`, the first time each speaker said it."""
    phrases = [p.split() for p in await session.scalars(select(KeywordPhrase.phrase))]
    if not phrases:
        return []
    by_speaker: dict[str | None, list[tuple[str, float]]] = {}
    for line in lines:
        by_speaker.setdefault(line.get("speaker"), []).extend(
            (str(w[0]).lower(), float(w[1])) for w in line.get("words", [])
        )
    heard = []
    for speaker, said in by_speaker.items():
        words = [w for w, _ in said]
        for phrase in phrases:
            for start in range(len(words) - len(phrase) + 1):
                if words[start : start + len(phrase)] == phrase:
                    heard.append((" ".join(phrase), speaker, said[start][1]))
                    break
    return heard


# --- supervisors' keyword phrases --------------------------------------------------------------------------------


def _phrase_words(phrase: str) -> str:
    words = "".join(c if c.isalnum() or c == "'" else " " for c in phrase.lower()).split()
    if not words:
        raise ValidationFailed("Type the phrase to listen for.", field="phrase")
    if len(words) > 8:
        raise ValidationFailed("A phrase has at most 8 words.", field="phrase")
    return " ".join(words)[:200]


async def add_keyword(*, session: AsyncSession, actor: Actor, phrase: str) -> KeywordPhrase:
    """A phrase to flag calls by (supervisors; audited). Its words, lower case: the recogniser writes no capitals."""
    require_role(actor, Role.SUPERVISOR)
    words = _phrase_words(phrase)
    if await session.scalar(select(KeywordPhrase.id).where(KeywordPhrase.phrase == words)) is not None:
        raise ValidationFailed(f"“{words}” is already listened for.", field="phrase")
    keyword = KeywordPhrase(phrase=words, created_by=actor.user_id)
    session.add(keyword)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="keyword_phrase",
        entity_id=keyword.id,
        after={"phrase": words},
    )
    return keyword


async def remove_keyword(*, session: AsyncSession, actor: Actor, keyword_id: str) -> None:
    require_role(actor, Role.SUPERVISOR)
    keyword = await session.get(KeywordPhrase, keyword_id)
    if keyword is None:
        raise NotFound("No such phrase.", keyword_id=keyword_id)
    await session.delete(keyword)
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="delete",
        entity_type="keyword_phrase",
        entity_id=keyword_id,
        before={"phrase": keyword.phrase},
    )


async def keywords(*, session: AsyncSession, actor: Actor) -> list[KeywordPhrase]:
    require_role(actor, Role.SUPERVISOR)
    return list(await session.scalars(select(KeywordPhrase).order_by(KeywordPhrase.phrase)))


async def flagged_calls(
    *, session: AsyncSession, actor: Actor, limit: int = 100
) -> list[tuple[CallKeywordHit, CallLog]]:
    """The latest calls on which a phrase was heard, newest first (supervisors)."""
    require_role(actor, Role.SUPERVISOR)
    rows = await session.execute(
        select(CallKeywordHit, CallLog)
        .join(CallLog, CallLog.id == CallKeywordHit.call_id)
        .order_by(CallKeywordHit.created_at.desc())
        .limit(limit)
    )
    return [(hit, call) for hit, call in rows]


async def requeue_job(*, session: AsyncSession, job: ClaimedJob) -> bool:
    """Give a job back untried (its worker is stopping, or its process pool broke)."""
    return await _finish(session, job, status=JobStatus.QUEUED.value, due_at=utcnow())


async def pending_count(*, session: AsyncSession, kind: JobKind) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(RecordingJob)
            .where(
                RecordingJob.kind == kind.value,
                RecordingJob.status.in_([JobStatus.QUEUED.value, JobStatus.WORKING.value]),
            )
        )
        or 0
    )


# --- reading transcripts -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallTranscript:
    call: CallLog
    recording: Recording | None
    transcript: Transcript | None


async def read_transcript(*, session: AsyncSession, actor: Actor, linkedid: str) -> CallTranscript:
    """The call's recording and transcript for `actor` (the agents who answered the call, supervisors, admins).
    Every read is audited."""
    call = await get_call(session=session, actor=actor, linkedid=linkedid)
    recording = await session.scalar(select(Recording).where(Recording.call_id == call.id))
    if recording is None:
        if not call.recording_ref:
            raise NotFound("This call has no recording.", linkedid=linkedid)
        return CallTranscript(call, None, None)  # reported by the PBX, not taken in yet
    transcript = await session.scalar(select(Transcript).where(Transcript.recording_id == recording.id))
    if transcript is not None:
        await record_audit(
            session=session,
            actor=actor.user_id,
            action="read",
            entity_type="transcript",
            entity_id=transcript.id,
            after={"linkedid": linkedid},
        )
    return CallTranscript(call, recording, transcript)


@dataclass(frozen=True, slots=True)
class TranscriptHit:
    linkedid: str
    customer_id: str | None
    caller_number: str
    agent: str | None
    offered_at: datetime
    transcript_id: str
    line: dict[str, Any]  # the first line holding a searched word
    at_s: float  # where that word starts in the recording


MAX_QUERY_WORDS = 8


def _query_words(query: str) -> list[str]:
    words = [w for w in "".join(c if c.isalnum() else " " for c in query).split() if w]
    if not words:
        raise ValidationFailed("Type at least one word to search the transcripts for.", field="q")
    return words[:MAX_QUERY_WORDS]


async def search_transcripts(
    *, session: AsyncSession, actor: Actor, query: str, customer_id: str | None = None, limit: int = 50
) -> list[TranscriptHit]:
    """Transcripts holding every word of `query` (newest call first): all of them for supervisors and admins, an
    agent's only on calls the agent answered. The search is audited, with the transcripts it showed."""
    require_role(actor, Role.AGENT, Role.SUPERVISOR)
    words = _query_words(query)
    statement = select(Transcript, CallLog).join(CallLog, CallLog.id == Transcript.call_id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.where(
            text("to_tsvector('simple', transcripts.text) @@ plainto_tsquery('simple', :tsquery)").bindparams(
                tsquery=" ".join(words)
            )
        )
    else:
        match = " ".join('"' + w.replace('"', "") + '"' for w in words)
        statement = statement.where(
            Transcript.search_key.in_(
                select(text("rowid")).select_from(text("transcripts_fts")).where(text("transcripts_fts MATCH :m"))
            )
        ).params(m=match)
    if customer_id is not None:
        statement = statement.where(CallLog.customer_id == customer_id)
    if actor.role is Role.AGENT:
        answered = select(CallLeg.call_id).where(
            CallLeg.agent == (actor.extension or ""), CallLeg.answered_at.is_not(None)
        )
        statement = statement.where((CallLog.agent == (actor.extension or "")) | CallLog.id.in_(answered))
    rows = (await session.execute(statement.order_by(CallLog.offered_at.desc()).limit(limit))).all()
    hits = []
    wanted = {w.lower() for w in words}
    for transcript, call in rows:
        line, at_s = _first_line_with(transcript.lines, wanted)
        hits.append(
            TranscriptHit(
                linkedid=call.linkedid,
                customer_id=call.customer_id,
                caller_number=call.caller_number,
                agent=call.agent,
                offered_at=call.offered_at,
                transcript_id=transcript.id,
                line=line,
                at_s=at_s,
            )
        )
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="read",
        entity_type="transcript_search",
        entity_id=customer_id or "*",
        after={"q": query[:200], "transcripts": [h.transcript_id for h in hits]},
    )
    return hits


def _first_line_with(lines: list[dict[str, Any]], wanted: set[str]) -> tuple[dict[str, Any], float]:
    for line in lines:
        for word in line.get("words", []):
            if str(word[0]).lower() in wanted:
                return line, float(word[1])
    return (lines[0], float(lines[0].get("start", 0.0))) if lines else ({}, 0.0)


async def customer_transcripts(*, session: AsyncSession, actor: Actor, customer_id: str) -> list[tuple[CallLog, str]]:
    """The customer's calls with a transcript that `actor` may read (for the customer page): (call, first words)."""
    require_role(actor, Role.AGENT, Role.SUPERVISOR)
    rows = await session.execute(
        select(CallLog, Transcript.text)
        .join(Transcript, Transcript.call_id == CallLog.id)
        .where(CallLog.customer_id == customer_id)
        .order_by(CallLog.offered_at.desc())
        .limit(20)
    )
    readable = []
    for call, words in rows:
        try:
            await check_call_access(session=session, actor=actor, call=call)
        except CrmError:
            continue
        readable.append((call, str(words)[:160]))
    return readable


# --- the admin's backlog ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BacklogJob:
    job_id: str
    kind: str
    status: str
    linkedid: str
    attempts: int
    reason: str | None
    due_at: datetime
    claimed_by: str | None


@dataclass(frozen=True, slots=True)
class Backlog:
    counts: dict[tuple[str, str], int]  # (kind, status) -> jobs
    open_jobs: list[BacklogJob]  # failed, working and waiting ones, failed first


async def recording_backlog(*, session: AsyncSession, actor: Actor, limit: int = 100) -> Backlog:
    """How many ingest and transcription jobs are queued, working, failed and done, and the unfinished ones."""
    require_role(actor, Role.ADMIN)
    counts = {
        (str(kind), str(status)): int(n)
        for kind, status, n in await session.execute(
            select(RecordingJob.kind, RecordingJob.status, func.count()).group_by(
                RecordingJob.kind, RecordingJob.status
            )
        )
    }
    failed_first = (RecordingJob.status != JobStatus.FAILED.value, RecordingJob.due_at)
    rows = await session.execute(
        select(RecordingJob, CallLog.linkedid)
        .join(Recording, Recording.id == RecordingJob.recording_id)
        .join(CallLog, CallLog.id == Recording.call_id)
        .where(RecordingJob.status != JobStatus.DONE.value)
        .order_by(*failed_first)
        .limit(limit)
    )
    jobs = [
        BacklogJob(job.id, job.kind, job.status, str(linkedid), job.attempts, job.reason, job.due_at, job.claimed_by)
        for job, linkedid in rows
    ]
    return Backlog(counts, jobs)


async def retry_failed_job(*, session: AsyncSession, actor: Actor, job_id: str) -> RecordingJob:
    """An admin tries a failed job again now, from its first attempt (audited)."""
    require_role(actor, Role.ADMIN)
    job = await session.get(RecordingJob, job_id)
    if job is None:
        raise NotFound("No such recording job.", job_id=job_id)
    if job.status != JobStatus.FAILED.value:
        raise ValidationFailed("Only a failed job can be retried.", field="job_id")
    before = {"status": job.status, "attempts": job.attempts, "reason": job.reason}
    job.status, job.attempts, job.reason, job.due_at, job.finished_at = JobStatus.QUEUED.value, 0, None, utcnow(), None
    if job.kind == JobKind.INGEST.value:
        await session.execute(
            update(Recording)
            .where(Recording.id == job.recording_id)
            .values(status=RecordingStatus.PENDING.value, reason=None)
        )
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="recording_job",
        entity_id=job.id,
        before=before,
        after={"status": job.status, "kind": job.kind},
    )
    return job


MAX_TRANSCRIPT_CHARS = 100_000


async def correct_transcript(*, session: AsyncSession, actor: Actor, linkedid: str, text: str) -> Transcript:
    """A supervisor's correction of what the recogniser heard: the searched text becomes `text`; the recogniser's
    own text is kept (the first time) in `original_text`, its lines and word times stay for the player. Audited."""
    require_role(actor, Role.SUPERVISOR)
    corrected = " ".join(text.split())
    if not corrected:
        raise ValidationFailed("Type the corrected transcript.", field="text")
    if len(corrected) > MAX_TRANSCRIPT_CHARS:
        raise ValidationFailed(f"A transcript has at most {MAX_TRANSCRIPT_CHARS} characters.", field="text")
    found = await read_transcript(session=session, actor=actor, linkedid=linkedid)
    transcript = found.transcript
    if transcript is None:
        raise NotFound("This call has no transcript yet.", linkedid=linkedid)
    before = transcript.text
    if transcript.original_text is None:
        transcript.original_text = before
    transcript.text = corrected
    transcript.corrected_by = actor.user_id
    transcript.corrected_at = utcnow()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="transcript",
        entity_id=transcript.id,
        before={"text": before},
        after={"text": corrected},
    )
    return transcript


# --- retention and legal holds -----------------------------------------------------------------------------------


async def set_retention(*, session: AsyncSession, actor: Actor, queue: str, days: int | None) -> None:
    """Keep `queue`'s recordings and transcripts `days` days after the call (None: for ever). Admins; audited."""
    require_role(actor, Role.ADMIN)
    queue = _queue_name(queue)
    if days is not None and not 1 <= days <= 36500:
        raise ValidationFailed("Days must be between 1 and 36500.", field="days")
    rule = await session.get(RetentionRule, queue)
    before = {"days": rule.days} if rule is not None else None
    if days is None:
        if rule is not None:
            await session.delete(rule)
    elif rule is None:
        session.add(RetentionRule(queue=queue, days=days, updated_by=actor.user_id))
    else:
        rule.days, rule.updated_by, rule.updated_at = days, actor.user_id, utcnow()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="recording_retention",
        entity_id=queue,
        before=before,
        after={"days": days},
    )


async def place_legal_hold(
    *, session: AsyncSession, actor: Actor, reason: str, customer_id: str | None = None, linkedid: str | None = None
) -> LegalHold:
    """Stop the deletion of a customer's recordings, or one call's (supervisors; audited)."""
    require_role(actor, Role.SUPERVISOR)
    reason = " ".join(reason.split())
    if not reason:
        raise ValidationFailed("Say why the recordings are held.", field="reason")
    if (customer_id is None) == (linkedid is None):
        raise ValidationFailed("Hold either a customer or a call.", field="customer_id")
    call_id = None
    if customer_id is not None and await session.get(Customer, customer_id) is None:
        raise NotFound("No such customer.", customer_id=customer_id)
    if linkedid is not None:
        call_id = await session.scalar(select(CallLog.id).where(CallLog.linkedid == linkedid))
        if call_id is None:
            raise NotFound("No such call.", linkedid=linkedid)
    hold = LegalHold(customer_id=customer_id, call_id=call_id, reason=reason[:500], placed_by=actor.user_id)
    session.add(hold)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="legal_hold",
        entity_id=hold.id,
        after={"customer_id": customer_id, "linkedid": linkedid, "reason": hold.reason},
    )
    return hold


async def release_legal_hold(*, session: AsyncSession, actor: Actor, hold_id: str) -> None:
    require_role(actor, Role.SUPERVISOR)
    hold = await session.get(LegalHold, hold_id)
    if hold is None or hold.released_at is not None:
        raise NotFound("No such legal hold in force.", hold_id=hold_id)
    hold.released_at = utcnow()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="legal_hold",
        entity_id=hold.id,
        after={"released": True},
    )


async def expire_recordings(*, session: AsyncSession, now: datetime | None = None, limit: int = 500) -> list[str]:
    """Recordings past their queue's retention and under no legal hold: their transcripts deleted, the recordings
    marked deleted (each audited); the storage keys whose files the caller deletes after commit."""
    now = now or utcnow()
    held_call = select(LegalHold.id).where(LegalHold.released_at.is_(None), LegalHold.call_id == CallLog.id)
    held_customer = select(LegalHold.id).where(
        LegalHold.released_at.is_(None), LegalHold.customer_id == CallLog.customer_id
    )
    rows = await session.execute(
        select(Recording, CallLog.linkedid, CallLog.ended_at, RetentionRule.days)
        .join(CallLog, CallLog.id == Recording.call_id)
        .join(RetentionRule, RetentionRule.queue == CallLog.queue)
        .where(
            Recording.status != RecordingStatus.DELETED.value,
            CallLog.ended_at.is_not(None),
            ~held_call.exists(),
            ~held_customer.exists(),
        )
        .order_by(CallLog.ended_at)
    )
    keys: list[str] = []
    for recording, linkedid, call_ended, days in rows:
        if call_ended is None or call_ended > now - timedelta(days=int(days)):
            continue
        if recording.storage_key:
            keys.append(recording.storage_key)
            if recording.layout == "split":
                stem = recording.storage_key.rsplit(".", 1)[0]
                keys += [f"{stem}-r.wav", f"{stem}-t.wav"]
        transcript_id = await session.scalar(select(Transcript.id).where(Transcript.recording_id == recording.id))
        if transcript_id is not None:
            await session.delete(await session.get(Transcript, transcript_id))
        await session.execute(
            update(RecordingJob)
            .where(RecordingJob.recording_id == recording.id, RecordingJob.status != JobStatus.DONE.value)
            .values(status=JobStatus.FAILED.value, reason="The recording was deleted by its retention rule.")
        )
        recording.status, recording.storage_key = RecordingStatus.DELETED.value, None
        recording.reason = f"Deleted after {days} days (retention of its queue)."
        await record_audit(
            session=session,
            actor=None,
            action="delete",
            entity_type="recording",
            entity_id=recording.id,
            before={"linkedid": linkedid, "transcript": transcript_id},
            after={"retention_days": int(days)},
        )
        if len(keys) >= limit:
            break
    return keys


async def stored_recording(*, session: AsyncSession, call_id: str) -> Recording | None:
    """The recording row of a call (None: not reported or not found yet), for the player to pick its file."""
    return await session.scalar(select(Recording).where(Recording.call_id == call_id))


# --- consent: transcription off for one call or one queue --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    queue: str
    retention_days: int | None
    transcription: bool


async def queue_policies(*, session: AsyncSession, actor: Actor) -> list[QueuePolicy]:
    """Each queue that has a rule: how long its recordings are kept, whether its calls are transcribed (admins)."""
    require_role(actor, Role.ADMIN)
    days = {str(q): int(d) for q, d in await session.execute(select(RetentionRule.queue, RetentionRule.days))}
    off = set(await session.scalars(select(TranscriptionOptOut.queue).where(TranscriptionOptOut.queue.is_not(None))))
    return [QueuePolicy(q, days.get(q), q not in off) for q in sorted(set(days) | {str(q) for q in off})]


def _queue_name(queue: str) -> str:
    queue = queue.strip()
    if not queue or len(queue) > 64 or any(not (c.isalnum() or c in "-_.") for c in queue):
        raise ValidationFailed("Name the queue: letters, digits, '-', '_' or '.', at most 64.", field="queue")
    return queue


async def set_queue_transcription(*, session: AsyncSession, actor: Actor, queue: str, on: bool) -> None:
    """Transcription on or off for the calls of `queue` from now on (admins; audited). Calls already
    transcribed keep their transcripts; the retention rule decides how long."""
    require_role(actor, Role.ADMIN)
    queue = _queue_name(queue)
    row = await session.scalar(select(TranscriptionOptOut).where(TranscriptionOptOut.queue == queue))
    if on and row is not None:
        await session.delete(row)
    elif not on and row is None:
        session.add(TranscriptionOptOut(queue=queue, set_by=actor.user_id))
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="queue_transcription",
        entity_id=queue,
        before={"transcription": row is None},
        after={"transcription": on},
    )


async def call_transcription(*, session: AsyncSession, actor: Actor, linkedid: str) -> bool:
    """Whether the call is (to be) transcribed, for those who may act on it."""
    call = await get_call(session=session, actor=actor, linkedid=linkedid)
    return await _call_transcription_on(session, call)


async def _call_transcription_on(session: AsyncSession, call: CallLog) -> bool:
    if await session.scalar(select(TranscriptionOptOut.id).where(TranscriptionOptOut.call_id == call.id)):
        return False
    return str((call.ivr_vars or {}).get(DECLINE_VARIABLE, "")).strip().lower() not in _DECLINED


async def set_call_transcription(*, session: AsyncSession, actor: Actor, linkedid: str, on: bool) -> bool:
    """The caller declines (or agrees again): transcription off or on for this one call, by the agent who answered
    it or a supervisor (audited). Off also stops a transcription not yet done and deletes a transcript already
    made; the recording stays. Returns whether the call is now transcribed."""
    call = await get_call(session=session, actor=actor, linkedid=linkedid)
    row = await session.scalar(select(TranscriptionOptOut).where(TranscriptionOptOut.call_id == call.id))
    deleted = None
    if on and row is not None:
        await session.delete(row)
    elif not on:
        if row is None:
            session.add(TranscriptionOptOut(call_id=call.id, set_by=actor.user_id))
        recording_id = await session.scalar(select(Recording.id).where(Recording.call_id == call.id))
        if recording_id is not None:
            await session.execute(
                update(RecordingJob)
                .where(
                    RecordingJob.recording_id == recording_id,
                    RecordingJob.kind == JobKind.TRANSCRIBE.value,
                    RecordingJob.status.in_([JobStatus.QUEUED.value, JobStatus.WORKING.value]),
                )
                .values(
                    status=JobStatus.DONE.value,
                    claim_token=None,  # a worker on it now finds the job no longer its own: nothing is stored
                    lease_until=None,
                    finished_at=utcnow(),
                    reason="Not transcribed: the caller declined.",
                )
            )
            transcript = await session.scalar(select(Transcript).where(Transcript.recording_id == recording_id))
            if transcript is not None:
                deleted = transcript.id
                await session.delete(transcript)
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="call_transcription",
        entity_id=call.linkedid,
        before={"transcription": row is None},
        after={"transcription": on, **({"deleted_transcript": deleted} if deleted else {})},
    )
    return on


@dataclass(frozen=True, slots=True)
class HoldInForce:
    hold: LegalHold
    customer_name: str | None
    linkedid: str | None


async def legal_holds(*, session: AsyncSession, actor: Actor) -> list[HoldInForce]:
    """The legal holds in force, newest first, with what they hold (supervisors)."""
    require_role(actor, Role.SUPERVISOR)
    rows = await session.execute(
        select(LegalHold, Customer.name, CallLog.linkedid)
        .outerjoin(Customer, Customer.id == LegalHold.customer_id)
        .outerjoin(CallLog, CallLog.id == LegalHold.call_id)
        .where(LegalHold.released_at.is_(None))
        .order_by(LegalHold.placed_at.desc())
    )
    return [HoldInForce(hold, name, linkedid) for hold, name, linkedid in rows]
