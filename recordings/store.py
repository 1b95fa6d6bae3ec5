"""Where call recordings come from (the folder the PBX's recordings reach: a mount of Asterisk's monitor spool, or
what a sync copies, looked up by the file name the PBX reported and never outside it) and where they are kept."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
MEDIA_TYPES = {
    ".wav": "audio/wav",
    ".gsm": "audio/x-gsm",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
}


class RecordingStore:
    """The PBX's recordings folder (MIXMONITOR_FILENAME names a file on the PBX host; only its name counts here)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, recording_ref: str) -> Path | None:
        """The file of a recording as the PBX named it (an absolute path on the PBX host), or None when it is not
        here (yet) or the name is not a plain audio file name: only the name counts, so no path leads elsewhere."""
        name = recording_ref.replace("\\", "/").rsplit("/", 1)[-1]
        if not _FILE_NAME.match(name) or Path(name).suffix.lower() not in MEDIA_TYPES:
            return None
        path = self.root / name
        return path if path.is_file() else None

    def companions(self, recording_ref: str) -> tuple[Path, Path] | None:
        """The two directions of a call recorded apart (MixMonitor's r() and t() options), named after the mixed
        file: <name>-r.wav (heard from the caller's channel: the customer) and <name>-t.wav (sent to it: the agent)."""
        name = recording_ref.replace("\\", "/").rsplit("/", 1)[-1]
        stem, dot, suffix = name.rpartition(".")
        if not dot:
            return None
        received = self.path_of(f"{stem}-r.{suffix}")
        sent = self.path_of(f"{stem}-t.{suffix}")
        return (received, sent) if received is not None and sent is not None else None

    @staticmethod
    def media_type(path: Path) -> str:
        return MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


class RecordingArchive(Protocol):
    """Where ingested recordings are kept: a local folder by default; an S3-compatible store implements the same."""

    def put(self, source: Path, key: str) -> StoredFile:
        """Copy `source` in under `key` (atomically: whole or not at all); its size and sha256 as copied."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A local file of `key` to read (for the player and the recogniser), or None when it is not there."""
        ...

    def delete(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredFile:
    key: str
    size_bytes: int
    sha256: str


_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,250}$")
_CHUNK = 1024 * 1024


class LocalArchive:
    """Recordings kept in a folder of this host, under keys like 2026/12/03/<recording id>.wav."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key.split("/"):
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key

    def put(self, source: Path, key: str) -> StoredFile:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        digest = hashlib.sha256()
        size = 0
        try:
            with source.open("rb") as src, partial.open("wb") as dst:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return StoredFile(key, size, digest.hexdigest())

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
