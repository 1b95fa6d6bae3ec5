"""`crm cti`: the CTI bridge alone, for the scaled-out set-up (one per PBX; web workers get its events via Redis)."""

from __future__ import annotations

import asyncio
import signal

import click

from agent_desktop.runtime import Runtime


@click.command("cti")
def cti() -> None:
    """Run the CTI bridge and the call-log writer without the web app (needs CRM_REDIS_URL to reach the web)."""
    from agent_desktop.cli import console, get_settings, run_with_runtime
    from agent_desktop.gc_policy import GcPolicy
    from agent_desktop.remote_pbx import PbxCommandServer
    from agent_desktop.telephony import start_remote_notifier, start_telephony

    settings = get_settings()
    if settings.redis_url is None:
        console.print("[yellow]CRM_REDIS_URL is not set: events of this process reach no web worker.[/]")

    async def _work(runtime: Runtime) -> None:
        telephony = await start_telephony(runtime)
        commands = None
        if runtime.settings.redis_url:
            start_remote_notifier(telephony, runtime)  # pops reach agents on every web worker
            commands = PbxCommandServer(
                runtime.settings.redis_url,
                runtime.settings.socketio_channel,
                telephony.pbx,
                resender=telephony.remote.notifier if telephony.remote is not None else None,
            )
            await commands.start()  # and their call controls reach the PBX
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        console.print(f"CTI bridge running ({telephony.pbx.connection.endpoint!r}). Ctrl+C stops it.")
        try:
            async with GcPolicy(every_s=runtime.settings.gc_freeze_every_s):
                await stop.wait()
        finally:
            if commands is not None:
                await commands.stop()
            await telephony.stop()

    run_with_runtime(_work, settings=settings)


COMMANDS: list[click.Command] = [cti]
