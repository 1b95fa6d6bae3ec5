"""`make run` beside a real Asterisk: the demo PBX takes a free port instead of failing on a busy 5038."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from pathlib import Path

from agent_desktop.runtime import build_runtime, migrate_database
from agent_desktop.telephony import start_telephony
from crm_core.settings import load_settings


async def test_demo_pbx_takes_a_free_port_when_5038_is_busy(tmp_path: Path) -> None:
    asterisk = socket.socket()
    try:
        asterisk.bind(("127.0.0.1", 5038))
        asterisk.listen(1)
    except OSError as exc:  # something (an Asterisk?) listens there already: the very case under test
        assert exc.errno == errno.EADDRINUSE
    settings = load_settings(
        {
            "CRM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}",
            "CRM_DATA_DIR": str(tmp_path),
            "CRM_SECRET_KEY": "test-secret-key-of-reasonable-length",
            "CRM_DEMO_CALLS_PER_MINUTE": "0",
        }
    )
    runtime = await build_runtime(settings)
    try:
        await migrate_database(runtime)
        telephony = await start_telephony(runtime)
        try:
            assert telephony.demo is not None and telephony.demo.port != 5038
            await asyncio.wait_for(telephony.pbx.resynced.wait(), 10)
            assert telephony.pbx.snapshot().connected
        finally:
            await telephony.stop()
    finally:
        await runtime.close()
        with contextlib.suppress(OSError):
            asterisk.close()
