"""The admin's backlog: jobs counted by kind and status, failed ones with their reason, a retry that starts a
failed job again (audited), refreshed by htmx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from crm_core.audit.models import AuditEntry
from crm_core.recordings.models import JobStatus
from tests.desktop.live import LiveCenter, start_center
from tests.desktop.test_authorization import signed_in_as
from tests.recordings.helpers import ended_call, ingester, recording_of
from tests.recordings.test_ingest import pcm_wav


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[LiveCenter]:
    live = await start_center(tmp_path)
    try:
        yield live
    finally:
        await live.stop()


async def test_an_admin_sees_the_backlog_and_retries_a_failed_job(center: LiveCenter, tmp_path: Path) -> None:
    sessions = center.runtime.sessions
    (tmp_path / "spool").mkdir()
    pcm_wav(tmp_path / "spool" / "fine.wav", seconds=1)
    await ended_call(sessions, "b.1", "late.wav")  # not synced yet
    await ended_call(sessions, "b.2", "fine.wav")
    worker = ingester(sessions, tmp_path, max_attempts=1, transcribe=False)
    while await worker.run_once() is not None:
        pass
    _, [failed] = await recording_of(sessions, "b.1")
    assert failed.status == JobStatus.FAILED

    admin, token = await signed_in_as(center, "root")
    try:
        async with admin.get(f"{center.base_url}/admin/recordings") as response:
            page = await response.text()
        assert response.status == 200
        assert '<td data-kind="ingest" data-status="failed">1</td>' in page
        assert '<td data-kind="ingest" data-status="done">1</td>' in page
        assert "late.wav is missing: it has not reached the recordings folder." in page
        assert f'hx-post="/admin/recordings/{failed.id}/retry"' in page
        assert 'hx-trigger="every 2s"' in page

        (tmp_path / "spool" / "late.wav").write_bytes((tmp_path / "spool" / "fine.wav").read_bytes())
        url = f"{center.base_url}/admin/recordings/{failed.id}/retry"
        async with admin.post(url, headers={"X-CSRF-Token": token, "HX-Request": "true"}) as response:
            table = await response.text()
        assert response.status == 200 and table.startswith('<div id="recording-backlog"')
        assert '<td data-kind="ingest" data-status="queued">1</td>' in table
        async with admin.post(url, headers={"X-CSRF-Token": token}) as response:
            assert response.status == 422  # not failed any more
            assert (await response.json())["message"] == "Only a failed job can be retried."
    finally:
        await admin.close()

    assert await worker.run_once() is not None
    recording, [job] = await recording_of(sessions, "b.1")
    assert (recording.status, job.status, job.attempts) == ("stored", JobStatus.DONE, 1)
    async with sessions() as db:
        entry = await db.scalar(select(AuditEntry).where(AuditEntry.entity_type == "recording_job"))
    assert entry is not None and (entry.action, entry.entity_id, entry.actor_id is not None) == ("update", job.id, True)
    assert entry.before == {
        "status": "failed",
        "attempts": 1,
        "reason": "late.wav is missing: it has not reached the recordings folder.",
    }
