"""Where call recordings are read from: a folder the PBX's recordings reach (a mount of Asterisk's monitor spool, or
what a sync copies), looked up by the file name the PBX reported (MIXMONITOR_FILENAME) and never outside it."""

from __future__ import annotations

import re
from pathlib import Path

_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
MEDIA_TYPES = {
    ".wav": "audio/wav",
    ".gsm": "audio/x-gsm",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
}


class RecordingStore:
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

    @staticmethod
    def media_type(path: Path) -> str:
        return MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
