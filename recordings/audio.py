"""What a recording file holds, read from its header: PCM WAV only, and a clear reason for anything else."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path


class AudioProblem(Exception):
    """A recording that cannot be taken (yet): missing, empty, truncated, not audio, unsupported."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AudioInfo:
    audio_format: str
    channels: int
    sample_rate: int
    sample_width: int
    frames: int
    data_offset: int
    size_bytes: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


_PCM = 1
_EXTENSIBLE = 0xFFFE


def probe_wav(path: Path) -> AudioInfo:
    """The format of a WAV file that can be transcribed (16-bit PCM, 1 or 2 channels, some audio in it), or
    AudioProblem naming what is wrong. A data chunk shorter than its header says is truncated (a copy cut short)."""
    name = path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(12)
            if size == 0:
                raise AudioProblem(f"{name} is empty (0 bytes).")
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                suffix = path.suffix.lower() or "(no extension)"
                raise AudioProblem(f"{name} is not a WAV audio file (format {suffix} is not supported; PCM WAV only).")
            fmt: tuple[int, int, int, int] | None = None
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    raise AudioProblem(f"{name} is truncated: it ends before its audio data begins.")
                chunk_id, chunk_size = struct.unpack("<4sI", chunk)
                if chunk_id == b"fmt ":
                    body = fh.read(chunk_size + (chunk_size & 1))
                    if len(body) < 16:
                        raise AudioProblem(f"{name} is truncated: its format header is cut short.")
                    tag, channels, rate, _byte_rate, _align, bits = struct.unpack("<HHIIHH", body[:16])
                    fmt = (tag, channels, rate, bits)
                elif chunk_id == b"data":
                    if fmt is None:
                        raise AudioProblem(f"{name} is not a valid WAV file: audio data before its format.")
                    return _checked(name, fmt, chunk_size, fh.tell(), size)
                else:
                    fh.seek(chunk_size + (chunk_size & 1), 1)
    except FileNotFoundError:
        raise AudioProblem(f"{name} is missing: it has not reached the recordings folder.") from None
    except OSError as exc:
        raise AudioProblem(f"{name} cannot be read: {exc.strerror or exc}.") from None


def _checked(name: str, fmt: tuple[int, int, int, int], declared: int, offset: int, size: int) -> AudioInfo:
    tag, channels, rate, bits = fmt
    if tag not in (_PCM, _EXTENSIBLE):
        raise AudioProblem(f"{name} holds compressed audio (WAV format tag {tag}); only PCM WAV is supported.")
    if bits != 16:
        raise AudioProblem(f"{name} has {bits}-bit samples; only 16-bit PCM is supported.")
    if channels not in (1, 2):
        raise AudioProblem(f"{name} has {channels} channels; only mono or stereo (agent and caller) are supported.")
    if rate < 8000 or rate > 192000:
        raise AudioProblem(f"{name} has an unusable sample rate of {rate} Hz.")
    present = size - offset
    if declared in (0, 0xFFFFFFFF) and present > 0:
        declared = present  # a header never rewritten (the PBX stopped uncleanly): the audio that is there counts
    if declared > present:
        raise AudioProblem(f"{name} is truncated: its header announces {declared} bytes of audio, {present} are there.")
    frame = channels * 2
    frames = declared // frame
    if frames == 0:
        raise AudioProblem(f"{name} holds no audio (0 seconds).")
    return AudioInfo("wav", channels, rate, 2, frames, offset, size)
