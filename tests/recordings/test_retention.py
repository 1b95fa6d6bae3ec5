"""Retention per queue: recordings and transcripts past their queue's days are deleted (rows, then files), each
deletion audited; a legal hold on the customer or the call stops it until released; other queues keep theirs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.audit.models import AuditEntry
from crm_core.calls.models import CallLog
from crm_core.customers.schemas import CustomerIn
from crm_core.customers.service import create_customer
from crm_core.db import utcnow
from crm_core.errors import PermissionDenied, ValidationFailed
from crm_core.recordings.models import Recording, Transcript
from crm_core.recordings.service import (
    discover_recordings,
    place_legal_hold,
    release_legal_hold,
    set_retention,
)
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, Actor
from recordings.retention import RetentionSweeper
from recordings.store import LocalArchive

SUPERVISOR = Actor(user_id="boss", role=Role.SUPERVISOR)


async def recorded_call(
    sessions: async_sessionmaker[AsyncSession],
    archive: LocalArchive,
    tmp: Path,
    linkedid: str,
    *,
    queue: str,
    days_ago: int,
    customer_id: str | None = None,
) -> str:
    ended = utcnow() - timedelta(days=days_ago)
    source = tmp / f"{linkedid}.wav"
    source.write_bytes(b"RIFF" + linkedid.encode())
    async with sessions() as db, db.begin():
        call = CallLog(
            linkedid=linkedid,
            direction="inbound",
            queue=queue,
            customer_id=customer_id,
            offered_at=ended,
            ended_at=ended,
            recording_ref=source.name,
        )
        db.add(call)
        await db.flush()
        stored = archive.put(source, f"old/{linkedid}.wav")
        recording = Recording(call_id=call.id, source_ref=source.name, status="stored", storage_key=stored.key)
        db.add(recording)
        await db.flush()
        db.add(Transcript(recording_id=recording.id, call_id=call.id, text=f"said on {linkedid}", lines=[]))
        return recording.id


async def test_retention_deletes_what_is_past_its_queues_days_unless_held(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    archive = LocalArchive(tmp_path / "store")
    since = utcnow()
    async with sessions() as db, db.begin():
        held_customer = await create_customer(session=db, actor=SYSTEM, region="US", data=CustomerIn(name="Held"))
        await set_retention(session=db, actor=SYSTEM, queue="support", days=30)
    ids = {
        "old": await recorded_call(sessions, archive, tmp_path, "t.1", queue="support", days_ago=40),
        "recent": await recorded_call(sessions, archive, tmp_path, "t.2", queue="support", days_ago=10),
        "held_call": await recorded_call(sessions, archive, tmp_path, "t.3", queue="support", days_ago=40),
        "held_customer": await recorded_call(
            sessions, archive, tmp_path, "t.4", queue="support", days_ago=40, customer_id=held_customer.id
        ),
        "other_queue": await recorded_call(sessions, archive, tmp_path, "t.5", queue="sales", days_ago=400),
    }
    async with sessions() as db, db.begin():
        await place_legal_hold(session=db, actor=SUPERVISOR, reason="case 12", linkedid="t.3")
        customer_hold = await place_legal_hold(
            session=db, actor=SUPERVISOR, reason="case 13", customer_id=held_customer.id
        )
    sweeper = RetentionSweeper(sessions, archive=archive)

    assert await sweeper.run_once() == 1

    async def state() -> dict[str, tuple[str, bool, bool]]:
        async with sessions() as db:
            out = {}
            for name, recording_id in ids.items():
                recording = await db.get(Recording, recording_id, populate_existing=True)
                assert recording is not None
                has_transcript = await db.scalar(select(Transcript.id).where(Transcript.recording_id == recording_id))
                on_disk = (tmp_path / "store" / "old" / f"t.{list(ids).index(name) + 1}.wav").exists()
                out[name] = (recording.status, has_transcript is not None, on_disk)
            return out

    assert await state() == {
        "old": ("deleted", False, False),
        "recent": ("stored", True, True),
        "held_call": ("stored", True, True),
        "held_customer": ("stored", True, True),
        "other_queue": ("stored", True, True),
    }
    async with sessions() as db, db.begin():
        assert await discover_recordings(session=db) == 0  # a deleted recording is not taken in again
        await release_legal_hold(session=db, actor=SUPERVISOR, hold_id=customer_hold.id)
    assert await sweeper.run_once() == 1
    assert (await state())["held_customer"] == ("deleted", False, False)
    assert (await state())["held_call"] == ("stored", True, True)

    async with sessions() as db:
        deletions = list(
            await db.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_type == "recording", AuditEntry.action == "delete", AuditEntry.at >= since)
                .order_by(AuditEntry.at)
            )
        )
    assert [(e.entity_id, e.before["linkedid"], e.after) for e in deletions] == [  # type: ignore[index]
        (ids["old"], "t.1", {"retention_days": 30}),
        (ids["held_customer"], "t.4", {"retention_days": 30}),
    ]


async def test_retention_and_holds_are_checked(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as db:
        for kwargs, field in (
            ({"queue": "", "days": 3}, "queue"),
            ({"queue": "support", "days": 0}, "days"),
        ):
            try:
                await set_retention(session=db, actor=SYSTEM, **kwargs)  # type: ignore[arg-type]
            except ValidationFailed as exc:
                assert exc.details == {"field": field}
            else:
                raise AssertionError(kwargs)
        try:
            await set_retention(session=db, actor=SUPERVISOR, queue="support", days=3)
        except PermissionDenied:
            pass
        else:
            raise AssertionError("a supervisor set a retention")
        try:
            await place_legal_hold(session=db, actor=SUPERVISOR, reason="x")
        except ValidationFailed as exc:
            assert exc.message == "Hold either a customer or a call."
        else:
            raise AssertionError("a hold on nothing")
