"""Helpers of the recording tests: an ended call that the PBX recorded, and the worker that takes it in."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.calls.models import CallLog
from crm_core.db import utcnow
from crm_core.recordings.models import Recording, RecordingJob
from recordings.ingest import RecordingIngester
from recordings.store import LocalArchive, RecordingStore


async def ended_call(sessions: async_sessionmaker[AsyncSession], linkedid: str, file_name: str) -> None:
    now = utcnow()
    async with sessions() as session, session.begin():
        session.add(
            CallLog(
                linkedid=linkedid,
                direction="inbound",
                caller_number="+15551230002",
                agent="1001",
                outcome="answered",
                offered_at=now - timedelta(minutes=2),
                answered_at=now - timedelta(minutes=1),
                ended_at=now,
                recording_ref=f"/var/spool/asterisk/monitor/{file_name}",
            )
        )


def ingester(sessions: async_sessionmaker[AsyncSession], tmp: Path, **options: Any) -> RecordingIngester:
    options.setdefault("settle_s", 0)
    return RecordingIngester(
        sessions, spool=RecordingStore(tmp / "spool"), archive=LocalArchive(tmp / "store"), **options
    )


async def recording_of(
    sessions: async_sessionmaker[AsyncSession], linkedid: str
) -> tuple[Recording, list[RecordingJob]]:
    async with sessions() as session:
        recording = await session.scalar(
            select(Recording).join(CallLog, CallLog.id == Recording.call_id).where(CallLog.linkedid == linkedid)
        )
        assert recording is not None
        jobs = list(
            await session.scalars(
                select(RecordingJob).where(RecordingJob.recording_id == recording.id).order_by(RecordingJob.created_at)
            )
        )
        return recording, jobs
