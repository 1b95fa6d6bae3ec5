"""Transcript search on SQLite (FTS5) and PostgreSQL (tsvector): every word must be there; an agent finds only the
calls the agent answered, supervisors all; a customer's search stays on the customer's calls; searches audited."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.audit.models import AuditEntry
from crm_core.calls.models import CallLeg, CallLog
from crm_core.customers.schemas import CustomerIn
from crm_core.customers.service import create_customer
from crm_core.db import utcnow
from crm_core.errors import PermissionDenied, ValidationFailed
from crm_core.recordings.models import Recording, Transcript
from crm_core.recordings.service import correct_transcript, read_transcript, search_transcripts
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, Actor

AGENT_1001 = Actor(user_id="u1001", role=Role.AGENT, extension="1001")
AGENT_1002 = Actor(user_id="u1002", role=Role.AGENT, extension="1002")
SUPERVISOR = Actor(user_id="boss", role=Role.SUPERVISOR)


async def transcribed_call(
    db: AsyncSession, linkedid: str, said: str, *, agent: str, customer_id: str | None, minutes_ago: int
) -> Transcript:
    at = utcnow() - timedelta(minutes=minutes_ago)
    call = CallLog(
        linkedid=linkedid,
        direction="inbound",
        agent=agent,
        customer_id=customer_id,
        offered_at=at,
        ended_at=at,
        recording_ref=f"{linkedid}.wav",
    )
    db.add(call)
    await db.flush()
    db.add(CallLeg(call_id=call.id, agent=agent, channel=f"Local/{agent}@agents-{linkedid}", answered_at=at))
    recording = Recording(call_id=call.id, source_ref=f"{linkedid}.wav", status="stored")
    db.add(recording)
    await db.flush()
    words = said.split()
    transcript = Transcript(
        recording_id=recording.id,
        call_id=call.id,
        text=said,
        lines=[
            {
                "speaker": None,
                "start": 0.0,
                "end": len(words) * 0.5,
                "text": said,
                "words": [[w, i * 0.5, i * 0.5 + 0.4, 1.0] for i, w in enumerate(words)],
            }
        ],
    )
    db.add(transcript)
    await db.flush()
    return transcript


async def test_search_finds_every_word_within_what_each_may_read(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    since = utcnow()
    async with sessions() as db, db.begin():
        alice = await create_customer(session=db, actor=SYSTEM, region="US", data=CustomerIn(name="Alice"))
        await transcribed_call(
            db, "s.1", "계약을 해지하고 싶어요 지금", agent="1001", customer_id=alice.id, minutes_ago=3
        )
        await transcribed_call(db, "s.2", "환불은 언제 되나요 해지", agent="1002", customer_id=None, minutes_ago=2)
        await transcribed_call(db, "s.3", "cancel my contract please", agent="1001", customer_id=None, minutes_ago=1)

    async with sessions() as db, db.begin():
        everyone = await search_transcripts(session=db, actor=SUPERVISOR, query="해지하고")
        assert [h.linkedid for h in everyone] == ["s.1"]
        assert (everyone[0].at_s, everyone[0].customer_id) == (0.5, alice.id)  # where the word is said
        assert [h.linkedid for h in await search_transcripts(session=db, actor=SUPERVISOR, query="해지")] == ["s.2"]
        both = await search_transcripts(session=db, actor=SUPERVISOR, query="Contract CANCEL")
        assert [h.linkedid for h in both] == ["s.3"]  # every word, any order and case
        assert await search_transcripts(session=db, actor=SUPERVISOR, query="contract refund") == []
        # an agent: the calls the agent answered only
        assert [h.linkedid for h in await search_transcripts(session=db, actor=AGENT_1002, query="해지")] == ["s.2"]
        assert await search_transcripts(session=db, actor=AGENT_1002, query="contract") == []
        assert [h.linkedid for h in await search_transcripts(session=db, actor=AGENT_1001, query="contract")] == ["s.3"]
        # one customer's calls
        assert await search_transcripts(session=db, actor=SUPERVISOR, query="contract", customer_id=alice.id) == []
        assert len(await search_transcripts(session=db, actor=SUPERVISOR, query="지금", customer_id=alice.id)) == 1
    async with sessions() as db:
        searches = list(
            await db.scalars(
                select(AuditEntry).where(AuditEntry.entity_type == "transcript_search", AuditEntry.at >= since)
            )
        )
    assert len(searches) == 9 and {e.actor_id for e in searches} == {"boss", "u1001", "u1002"}


async def test_a_transcript_is_read_by_who_answered_and_supervisors_each_read_audited(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    since = utcnow()
    async with sessions() as db, db.begin():
        transcript = await transcribed_call(
            db, "r.1", "요금제 바꿔 주세요", agent="1001", customer_id=None, minutes_ago=1
        )
    for reader in (AGENT_1001, SUPERVISOR):
        async with sessions() as db, db.begin():
            found = await read_transcript(session=db, actor=reader, linkedid="r.1")
            assert found.transcript is not None and found.transcript.text == "요금제 바꿔 주세요"
    async with sessions() as db, db.begin():
        try:
            await read_transcript(session=db, actor=AGENT_1002, linkedid="r.1")
        except PermissionDenied:
            pass
        else:
            raise AssertionError("agent 1002 read a call it never answered")
    async with sessions() as db:
        reads = list(
            await db.scalars(select(AuditEntry).where(AuditEntry.entity_type == "transcript", AuditEntry.at >= since))
        )
    assert sorted((e.actor_id, e.entity_id) for e in reads) == [("boss", transcript.id), ("u1001", transcript.id)]
    async with sessions() as db:
        for bad in ("", "  ", "!!!"):
            try:
                await search_transcripts(session=db, actor=SUPERVISOR, query=bad)
            except ValidationFailed as exc:
                assert exc.details == {"field": "q"}
            else:
                raise AssertionError(f"{bad!r} was searched")


async def test_a_supervisor_corrects_a_transcript_the_original_kept_and_the_correction_searched(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    since = utcnow()
    async with sessions() as db, db.begin():
        transcript = await transcribed_call(
            db, "c.1", "cancel my contrast", agent="1001", customer_id=None, minutes_ago=1
        )
    async with sessions() as db, db.begin():
        try:
            await correct_transcript(session=db, actor=AGENT_1001, linkedid="c.1", text="cancel my contract")
        except PermissionDenied:
            pass
        else:
            raise AssertionError("an agent corrected a transcript")
    for text in ("cancel my contract", "  cancel   my contract please "):
        async with sessions() as db, db.begin():
            await correct_transcript(session=db, actor=SUPERVISOR, linkedid="c.1", text=text)
    async with sessions() as db, db.begin():
        stored = await db.get(Transcript, transcript.id)
        assert stored is not None
        assert (stored.text, stored.original_text, stored.corrected_by) == (
            "cancel my contract please",
            "cancel my contrast",
            "boss",
        )
        assert stored.lines == transcript.lines  # what the recogniser heard, with its times, stays
        assert [
            h.linkedid for h in await search_transcripts(session=db, actor=SUPERVISOR, query="contract please")
        ] == ["c.1"]
        assert await search_transcripts(session=db, actor=SUPERVISOR, query="contrast") == []
        try:
            await correct_transcript(session=db, actor=SUPERVISOR, linkedid="c.1", text="   ")
        except ValidationFailed as exc:
            assert exc.details == {"field": "text"}
        else:
            raise AssertionError("an empty correction was saved")
    async with sessions() as db:
        audit = select(AuditEntry).where(
            AuditEntry.entity_type == "transcript", AuditEntry.action == "update", AuditEntry.at >= since
        )
        changes = [(e.before, e.after) for e in await db.scalars(audit.order_by(AuditEntry.at))]
    assert changes == [
        ({"text": "cancel my contrast"}, {"text": "cancel my contract"}),
        ({"text": "cancel my contract"}, {"text": "cancel my contract please"}),
    ]
