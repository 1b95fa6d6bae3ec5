"""The local-AGI entry point (pyst2) runs the same flow when Asterisk starts it with stdin/stdout as the AGI line."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.ivr.asterisk import SimulatedCall
from tests.ivr.conftest import make_ivr


async def run_script(call: SimulatedCall, env: dict[str, str], *args: str) -> tuple[SimulatedCall, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ivr.agi_script",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(call.environment())
    await process.stdin.drain()
    while True:
        raw = await asyncio.wait_for(process.stdout.readline(), 30)
        if not raw:
            break
        command = raw.decode().rstrip("\n")
        if not command:
            continue
        call.commands.append(command)
        process.stdin.write(call.answer(command).encode() + b"\n")
        await process.stdin.drain()
        if command.startswith("HANGUP"):
            break
    process.stdin.close()
    code = await asyncio.wait_for(process.wait(), 30)
    return call, code


async def test_agi_script_identifies_a_vip_and_routes_it(tmp_path: Path) -> None:
    live = await make_ivr(tmp_path)
    await live.close()  # the script opens the database itself
    env = {
        **os.environ,
        "CRM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'ivr.db'}",
        "CRM_DATA_DIR": str(tmp_path),
    }
    call, code = await run_script(SimulatedCall("+15551230001", script="identify"), env, "sample", "identify")
    assert code == 0
    assert call.variables["TARGET_QUEUE"] == "support" and call.variables["CRM_VIP"] == "gold"
    assert call.variables["CRM_CUSTOMER_ID"] == live.ids["alice"]


async def test_agi_script_reports_a_missing_flow(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CRM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'none.db'}",
        "CRM_DATA_DIR": str(tmp_path),
    }
    call, code = await run_script(SimulatedCall("+15551230001"), env, "nosuchflow")
    assert code == 1
    assert any(c.startswith("VERBOSE") and "cannot be read" in c for c in call.commands)
