"""`crm agi`: the FastAGI server alone (for an IVR host beside the PBX), and `crm check-flow FILE`."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from agent_desktop.runtime import Runtime


@click.command("agi")
def agi() -> None:
    """Run the FastAGI server for Asterisk's AGI(agi://host:4573/<flow>) without the web app."""
    from agent_desktop.cli import console, get_settings, run_with_runtime
    from agent_desktop.ivr_service import start_ivr

    async def _work(runtime: Runtime) -> None:
        ivr = await start_ivr(runtime)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        console.print(f"FastAGI listening on {runtime.settings.agi_host}:{ivr.port} (flows: {', '.join(ivr.flows)}).")
        try:
            await stop.wait()
        finally:
            await ivr.stop()

    run_with_runtime(_work, settings=get_settings())


@click.command("check-flow")
@click.argument("flow_file", type=click.Path(path_type=Path))
def check_flow(flow_file: Path) -> None:
    """Validate an IVR flow file and say what is wrong, with its line."""
    from agent_desktop.cli import console, fail
    from ivr.flow import FlowError, load_flow

    try:
        flow = load_flow(flow_file)
    except FlowError as exc:
        fail(str(exc))
        return
    console.print(f"{flow_file}: flow '{flow.name}' with {len(flow.nodes)} nodes is valid.")


COMMANDS: list[click.Command] = [agi, check_flow]
