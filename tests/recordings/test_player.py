"""The player hears the checked copy in the store once a recording is taken in (the PBX's folder may be cleaned),
and nothing once its queue's retention deleted it (and no listen is audited then)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from crm_core.audit.models import AuditEntry
from crm_core.calls.models import CallLog
from crm_core.db import utcnow
from crm_core.recordings.service import set_retention
from crm_core.users.service import SYSTEM
from recordings.ingest import RecordingIngester
from recordings.retention import RetentionSweeper
from recordings.store import LocalArchive, RecordingStore
from tests.desktop.live import LiveCenter, start_center
from tests.desktop.test_authorization import signed_in_as
from tests.recordings.helpers import ended_call
from tests.recordings.test_ingest import pcm_wav


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[LiveCenter]:
    live = await start_center(tmp_path)
    try:
        yield live
    finally:
        await live.stop()


async def test_the_stored_copy_is_played_and_a_deleted_recording_is_not(center: LiveCenter) -> None:
    settings = center.runtime.settings
    sessions = center.runtime.sessions
    settings.recordings_folder.mkdir(parents=True, exist_ok=True)
    spooled = settings.recordings_folder / "kept.wav"
    audio = pcm_wav(spooled, seconds=1)
    await ended_call(sessions, "p.1", "kept.wav")
    async with sessions() as db, db.begin():
        await db.execute(update(CallLog).values(queue="support"))
    agent, _ = await signed_in_as(center, "agent1001")
    async with agent.get(f"{center.base_url}/calls/p.1/transcript") as response:
        assert response.status == 200  # the customer page links it already: it says what is coming
        assert "The recording has not been taken in yet; its transcript follows." in await response.text()
    ingester = RecordingIngester(
        sessions,
        spool=RecordingStore(settings.recordings_folder),
        archive=LocalArchive(settings.recordings_store_folder),
        settle_s=0,
        transcribe=False,
    )
    assert await ingester.run_once() is not None
    spooled.unlink()  # the PBX's folder cleaned up

    url = f"{center.base_url}/api/calls/p.1/recording"
    try:
        async with agent.get(url) as response:
            assert response.status == 200 and await response.read() == audio

        async with sessions() as db, db.begin():
            await set_retention(session=db, actor=SYSTEM, queue="support", days=30)
            await db.execute(update(CallLog).values(ended_at=utcnow() - timedelta(days=31)))
        assert await RetentionSweeper(sessions, archive=LocalArchive(settings.recordings_store_folder)).run_once() == 1

        async with sessions() as db:
            listens_before = len(
                list(await db.scalars(select(AuditEntry).where(AuditEntry.entity_type == "recording")))
            )
        async with agent.get(url, headers={"Range": "bytes=0-"}) as response:
            assert response.status == 404
            assert (await response.json())["message"] == "This recording was deleted under its queue's retention rule."
    finally:
        await agent.close()
    async with sessions() as db:
        entries = list(await db.scalars(select(AuditEntry).where(AuditEntry.entity_type == "recording")))
    assert len(entries) == listens_before  # the refused listen left no trace; the deletion was audited before
    assert sorted(e.action for e in entries) == ["delete", "read"]
