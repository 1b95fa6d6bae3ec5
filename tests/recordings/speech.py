"""Test audio: Korean speech from espeak-ng (the tests' Vosk model is Korean), at any rate and layout, via sox."""

from __future__ import annotations

import json
import subprocess
import wave
from pathlib import Path
from typing import Any

SENTENCES = ("안녕하세요 계약을 해지하고 싶습니다", "환불은 언제 되나요", "요금제를 바꾸고 싶어요")


def speak(text: str, target: Path, *, rate: int = 16000, channels: int = 1) -> Path:
    """`text` spoken by espeak-ng (Korean voice) as 16-bit PCM WAV at `rate` with `channels` (both the same)."""
    raw = target.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", "ko", "-s", "140", "-w", str(raw), text], check=True)
    subprocess.run(
        ["sox", "-D", "-q", str(raw), "-b", "16", "-r", str(rate), "-c", str(channels), str(target)], check=True
    )
    raw.unlink()
    return target


def stereo(left: Path, right: Path, target: Path) -> Path:
    """Two mono files as the left and right channels of one (MixMonitor's D option)."""
    subprocess.run(["sox", "-D", "-q", "-M", str(left), str(right), str(target)], check=True)
    return target


def bare_vosk_words(model_path: Path, wav: Path) -> list[list[Any]]:
    """Vosk alone over a mono 16-bit WAV at its own rate: its words with times (seeded as the pipeline seeds)."""
    import ctypes

    from vosk import KaldiRecognizer, Model, SetLogLevel

    SetLogLevel(-1)
    ctypes.CDLL(None).srand(0)
    model = Model(str(model_path))
    with wave.open(str(wav), "rb") as audio:
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
