"""`crm transcribe --pending`: the waiting recordings ingested and transcribed with a progress bar, then exit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.recordings.models import Transcript
from tests.recordings.helpers import ended_call
from tests.recordings.speech import SENTENCES, speak


async def test_transcribe_pending_works_through_the_backlog_and_says_so(
    sqlite_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    spool = tmp_path / "recordings"  # CRM_DATA_DIR/recordings: where the PBX's files arrive by default
    spool.mkdir()
    speak(SENTENCES[1], spool / "p1.wav", rate=8000)
    (spool / "p2.wav").write_bytes(b"")  # a bad one: it must not stop the other
    await ended_call(sqlite_sessions, "p.1", "p1.wav")
    await ended_call(sqlite_sessions, "p.2", "p2.wav")
    env = {
        **os.environ,
        "CRM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}",
        "CRM_DATA_DIR": str(tmp_path),
        "CRM_SECRET_KEY": "test-secret-key-of-reasonable-length",
        "CRM_RECORDINGS_SETTLE_S": "0",
        "COLUMNS": "100",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "from agent_desktop.cli import main; main()", "transcribe", "--pending"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "transcribing" in done.stderr and "1/1" in done.stderr  # the progress bar, complete
    assert "1 transcript(s) stored, 0 attempt(s) failed." in done.stderr
    assert "p2.wav is empty (0 bytes)." in done.stderr  # the bad file is logged with its reason
    async with sqlite_sessions() as db:
        transcripts = list(await db.scalars(select(Transcript)))
    assert len(transcripts) == 1 and transcripts[0].lines
