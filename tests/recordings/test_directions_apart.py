"""The dialplan of docs/ivr/extensions.conf records the two directions apart (MixMonitor r() and t()); the ingest
takes the three files it writes and the transcript is a dialogue: the customer's words are bare Vosk's on the r()
file, the agent's on the t() file (speech made by espeak-ng, 8 kHz as the PBX writes it)."""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.recordings.models import JobKind, JobStatus
from recordings.store import LocalArchive, RecordingStore
from recordings.transcribe import Transcriber
from tests.recordings.helpers import ended_call, ingester, recording_of
from tests.recordings.speech import SENTENCES, bare_vosk_words, speak
from tests.recordings.test_transcription import transcript_of, upsampled, words_of

DIALPLAN = Path(__file__).resolve().parents[2] / "docs" / "ivr" / "extensions.conf"
UNIQUEID = "1795462442.7"


def files_the_dialplan_writes() -> tuple[str, str, str]:
    """The mixed, received (r) and transmitted (t) file names of the dialplan's MixMonitor, for one call."""
    lines = [line.split(";", 1)[0] for line in DIALPLAN.read_text().splitlines()]
    [call] = [line for line in lines if "MixMonitor(" in line]
    found = re.search(r"MixMonitor\(([^,()]+),\s*r\(([^()]+)\)t\(([^()]+)\)\)", call)
    assert found is not None, call
    mixed, received, sent = (name.replace("${UNIQUEID}", UNIQUEID) for name in found.groups())
    return mixed, received, sent


def mixed_down(received: Path, sent: Path, target: Path) -> None:
    """The mixed file MixMonitor writes beside the two directions (what the player plays)."""
    subprocess.run(["sox", "-D", "-q", "-m", str(received), str(sent), str(target)], check=True)


async def test_the_dialplans_two_directions_become_a_dialogue_of_customer_and_agent(
    sqlite_sessions: async_sessionmaker[AsyncSession], tmp_path: Path, vosk_pool: ProcessPoolExecutor, model_path: Path
) -> None:
    sessions = sqlite_sessions
    spool = tmp_path / "spool"
    spool.mkdir()
    mixed, received, sent = files_the_dialplan_writes()
    customer = speak(SENTENCES[0], spool / received, rate=8000)
    agent = speak(SENTENCES[2], spool / sent, rate=8000)
    mixed_down(customer, agent, spool / mixed)
    assert RecordingStore(spool).companions(f"/var/spool/asterisk/monitor/{mixed}") == (customer, agent)
    await ended_call(sessions, "s.1", mixed)

    while await ingester(sessions, tmp_path).run_once() is not None:
        pass
    recording, jobs = await recording_of(sessions, "s.1")
    assert (recording.status, recording.layout, recording.channels, recording.sample_rate) == (
        "stored",
        "split",
        1,
        8000,
    )
    assert recording.storage_key is not None
    stem = recording.storage_key.rsplit(".", 1)[0]
    archive = LocalArchive(tmp_path / "store")
    for key, source in ((recording.storage_key, spool / mixed), (f"{stem}-r.wav", customer), (f"{stem}-t.wav", agent)):
        kept = archive.local_path(key)
        assert kept is not None and kept.read_bytes() == source.read_bytes()
    assert [(j.kind, j.status) for j in jobs] == [
        (JobKind.INGEST, JobStatus.DONE),
        (JobKind.TRANSCRIBE, JobStatus.QUEUED),
    ]

    worker = Transcriber(sessions, archive=archive, model_path=model_path, pool=vosk_pool)
    assert await worker.run_pending() == 1

    transcript = await transcript_of(sessions, "s.1")
    said_by_customer = words_of(transcript, "customer")
    assert said_by_customer == bare_vosk_words(vosk_pool, upsampled(customer, tmp_path / "r16.wav"))
    assert words_of(transcript, "agent") == bare_vosk_words(vosk_pool, upsampled(agent, tmp_path / "t16.wav"))
    assert said_by_customer and words_of(transcript, "agent")
    assert {line["speaker"] for line in transcript.lines} == {"customer", "agent"}
