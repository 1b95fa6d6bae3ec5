"""FastAGI sessions are bounded: a silent Asterisk side is let go after the answer timeout, and connections over the
session limit are closed, both logged, while the server goes on serving everyone else. Over real TCP; each wait is
on the socket closing (a read that returns EOF), with a timeout only as a safety bound."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crm_core.errors import SettingsError
from crm_core.settings import load_settings
from tests.ivr.asterisk import SimulatedCall
from tests.ivr.conftest import Ivr, make_ivr

SAFETY_S = 10  # never reached when the server behaves; fails the test instead of hanging it


@pytest.fixture
async def ivr(tmp_path: Path) -> AsyncIterator[Ivr]:
    live = await make_ivr(tmp_path)
    try:
        yield live
    finally:
        await live.close()


async def silent_asterisk(port: int, uniqueid: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Asterisk's side of a session that sends its environment and then never answers a command."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(SimulatedCall("+15551230001", uniqueid=uniqueid).environment())
    await writer.drain()
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server still sends until it closes the connection (EOF)."""
    return await asyncio.wait_for(reader.read(), SAFETY_S)


async def served(ivr: Ivr) -> None:
    call = await asyncio.wait_for(SimulatedCall("+15551230001").run(ivr.port), SAFETY_S)
    assert call.variables["TARGET_QUEUE"] == "support" and call.variables["CRM_CUSTOMER_ID"] == ivr.ids["alice"]


async def test_a_silent_session_is_closed_and_logged_while_others_are_served(
    ivr: Ivr, caplog: pytest.LogCaptureFixture
) -> None:
    ivr.server.answer_timeout_s = 0.5
    reader, writer = await silent_asterisk(ivr.port, "1795462442.77")
    try:
        first = await asyncio.wait_for(reader.readline(), SAFETY_S)
        assert first.endswith(b"\n")  # the IVR's first command, which this side never answers
        await served(ivr)  # another caller is served while this one is silent
        with caplog.at_level(logging.WARNING, logger="ivr.fastagi"):
            assert await closed_by_server(reader) == b""  # closed, and nothing more was sent to the silent side
        [quiet] = [r for r in caplog.records if "gave no answer" in r.getMessage()]
        assert "1795462442.77" in quiet.getMessage() and "Local/18005550100@from-pstn-00000000;2" in quiet.getMessage()
        assert ivr.server.stats.went_quiet == 1 and ivr.server.stats.open_sessions == 0
        await served(ivr)  # and after
    finally:
        writer.close()


async def test_a_connection_over_the_session_limit_is_closed_and_logged(
    ivr: Ivr, caplog: pytest.LogCaptureFixture
) -> None:
    ivr.server.max_sessions = 1
    held_reader, held_writer = await silent_asterisk(ivr.port, "1795462442.1")
    try:
        assert await asyncio.wait_for(held_reader.readline(), SAFETY_S)  # the one session allowed is running
        with caplog.at_level(logging.WARNING, logger="ivr.fastagi"):
            extra_reader, extra_writer = await silent_asterisk(ivr.port, "1795462442.2")
            try:
                assert await closed_by_server(extra_reader) == b""  # refused: closed without a command
            finally:
                extra_writer.close()
        [refused] = [r for r in caplog.records if "refused AGI session" in r.getMessage()]
        assert "1795462442.2" in refused.getMessage() and "CRM_AGI_MAX_SESSIONS" in refused.getMessage()
        assert ivr.server.stats.refused == 1 and ivr.server.stats.open_sessions == 1
        held_writer.write_eof()  # the held caller hangs up (Asterisk's side ends): its session ends, freeing its place
        assert await closed_by_server(held_reader) == b""
        assert ivr.server.stats.open_sessions == 0
    finally:
        held_writer.close()
    await served(ivr)


def test_the_limits_are_settings() -> None:
    defaults = load_settings({})
    assert defaults.agi_answer_timeout_s == 30 and defaults.agi_max_sessions >= 2000  # 2,000 paced callers (bench)
    tuned = load_settings({"CRM_AGI_ANSWER_TIMEOUT_S": "2.5", "CRM_AGI_MAX_SESSIONS": "10"})
    assert tuned.agi_answer_timeout_s == 2.5 and tuned.agi_max_sessions == 10
    for bad in ({"CRM_AGI_ANSWER_TIMEOUT_S": "0"}, {"CRM_AGI_MAX_SESSIONS": "0"}):
        with pytest.raises(SettingsError):
            load_settings(bad)
