"""Test audio: Korean speech from espeak-ng (the tests' Vosk model is Korean), at any rate and layout, via sox."""

from __future__ import annotations

import ctypes
import json
import subprocess
import wave
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

SENTENCES = ("계약을 해지하고 싶어요", "환불은 언제 되나요", "요금제 바꿔 주세요")


def speak(text: str, target: Path, *, rate: int = 16000, channels: int = 1) -> Path:
    """`text` spoken by espeak-ng (Korean voice) as 16-bit PCM WAV at `rate` with `channels` (both the same)."""
    raw = target.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", "ko", "-s", "170", "-w", str(raw), text], check=True)
    subprocess.run(
        ["sox", "-D", "-q", str(raw), "-b", "16", "-r", str(rate), "-c", str(channels), str(target)], check=True
    )
    raw.unlink()
    return target


def stereo(left: Path, right: Path, target: Path) -> Path:
    """Two mono files as the left and right channels of one (MixMonitor's D option)."""
    subprocess.run(["sox", "-D", "-q", "-M", str(left), str(right), str(target)], check=True)
    return target


def bare_vosk_words(pool: Executor, wav: Path) -> list[list[Any]]:
    """Vosk alone over a mono 16-bit WAV at its own rate: its words with times, worked out in a process of `pool`
    (which has the model loaded: loading it again would take seconds)."""
    return pool.submit(_bare_vosk_words, str(wav)).result()


def _bare_vosk_words(wav: str) -> list[list[Any]]:
    """The plain Vosk loop over a file. Kaldi dithers with the C library's random numbers, so they are seeded
    first, as the pipeline seeds them (else no two runs of one file agree)."""
    from vosk import KaldiRecognizer

    from recordings.vosk_engine import loaded_model

    model = loaded_model()
    ctypes.CDLL(None).srand(0)
    with wave.open(wav, "rb") as audio:
        recogniser = KaldiRecognizer(model, audio.getframerate())
        recogniser.SetWords(True)
        results = []
        while chunk := audio.readframes(4000):
            if recogniser.AcceptWaveform(chunk):
                results.append(json.loads(recogniser.Result()))
        results.append(json.loads(recogniser.FinalResult()))
    return [
        [w["word"], round(w["start"], 3), round(w["end"], 3)] for result in results for w in result.get("result", [])
    ]
