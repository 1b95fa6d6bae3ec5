"""Local AGI entry point (pyst2), for Asterisk hosts that run `AGI(crm-ivr-agi,<flow>[,<node>])` instead of FastAGI.

Asterisk starts this program per call and talks AGI over stdin/stdout; it runs the same flows as the FastAGI
server. Settings come from the CRM_* environment (CRM_DATABASE_URL at least) or CRM_CONFIG.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from asterisk.agi import AGI, AGIException

from crm_core.customers.lookup import CallerIdLookup
from crm_core.db import make_engine, make_sessionmaker
from crm_core.errors import CrmError
from crm_core.settings import load_settings
from ivr.engine import CallerHungUp, CrmContext, FlowRunner
from ivr.flow import FlowError, load_flow

log = logging.getLogger("crm.ivr.agi")
FLOWS = Path(__file__).resolve().parent / "flows"


class PystLine:
    """The CallerLine over pyst2's AGI (blocking stdin/stdout, so each command runs in a worker thread)."""

    def __init__(self, agi: Any) -> None:
        self.agi = agi
        self.caller_number = agi.env.get("agi_callerid", "")
        if self.caller_number in ("unknown", "anonymous"):
            self.caller_number = ""
        self.uniqueid = agi.env.get("agi_uniqueid", "")

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(getattr(self.agi, method), *args)
        except AGIException as exc:
            if "hangup" in type(exc).__name__.lower() or "AppError" in type(exc).__name__:
                raise CallerHungUp from None
            raise

    async def play(self, prompt: str) -> None:
        await self._call("stream_file", prompt)

    async def get_digits(self, prompt: str, timeout_s: int, max_digits: int) -> str:
        digits = await self._call("get_data", prompt, timeout_s * 1000, max_digits)
        return str(digits or "")

    async def say_number(self, number: int) -> None:
        await self._call("say_number", number)

    async def set_variable(self, name: str, value: str) -> None:
        await self._call("set_variable", name, value)

    async def get_variable(self, name: str) -> str | None:
        value = await self._call("get_variable", name)
        return str(value) if value else None

    async def exec_app(self, application: str, arguments: str) -> None:
        await self._call("appexec", application, arguments)

    async def record(self, seconds: int) -> str | None:
        path = Path(tempfile.gettempdir()) / f"crm-ivr-{time.monotonic_ns()}"
        await self._call("record_file", str(path), "wav", "#", seconds * 1000, 0, "", 2)
        wav = Path(f"{path}.wav")
        return str(wav) if await asyncio.to_thread(wav.exists) else None

    async def hangup(self) -> None:
        try:
            await self._call("hangup")
        except CallerHungUp:
            pass


async def run(agi: Any, flow_name: str, start: str | None) -> int:
    settings = load_settings()
    folder = settings.ivr_flows_dir or FLOWS
    flow = load_flow(folder / f"{flow_name}.yaml")
    engine = make_engine(settings.database_url)
    crm = CrmContext(
        sessions=make_sessionmaker(engine),
        lookup=CallerIdLookup(engine, settings.default_region),
        region=settings.default_region,
    )
    try:
        state = await FlowRunner(flow, crm).run(PystLine(agi), start=start)
        log.info("IVR %s ended: %s", flow_name, state.outcome)
        return 0
    finally:
        await crm.lookup.close()
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)  # stdout belongs to AGI
    agi = AGI()
    flow_name = args[0] if args else "sample"
    start = args[1] if len(args) > 1 else None
    try:
        return asyncio.run(run(agi, flow_name, start))
    except (FlowError, CrmError) as exc:
        log.error("%s", exc)
        agi.verbose(f"CRM IVR: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
