"""`crm webhooks`: the webhook worker alone (scaled out), and the one builder `crm serve` uses too."""

from __future__ import annotations

import asyncio
import signal

import click

from agent_desktop.runtime import Runtime
from crm_core.bus import RedisEventBus
from crm_core.webhooks.sender import WebhookSender
from crm_core.webhooks.worker import RetryPolicy, WebhookWorker


def build_webhook_worker(runtime: Runtime) -> WebhookWorker:
    """The worker from settings, taking the events of this process's bus."""
    settings = runtime.settings
    worker = WebhookWorker(
        runtime.sessions,
        WebhookSender(settings.webhook_address_policy, timeout_s=settings.webhook_timeout_s),
        retry=RetryPolicy(
            base_s=settings.webhook_backoff_s,
            cap_s=settings.webhook_backoff_max_s,
            window=settings.webhook_retry_window,
        ),
        lease_s=settings.webhook_lease_s,
    )
    worker.attach(runtime.bus)
    return worker


async def stop_webhook_worker(worker: WebhookWorker) -> None:
    await worker.stop()
    await worker.sender.close()


@click.command("webhooks")
@click.option("--poll", type=float, default=1.0, show_default=True, help="Seconds between looks for due deliveries.")
def webhooks(poll: float) -> None:
    """Send webhook deliveries (several may run: they share the work through row locks). With CRM_REDIS_URL it also
    records the events every process publishes."""
    from agent_desktop.cli import console, fail, get_settings, run_with_runtime
    from agent_desktop.gc_policy import GcPolicy

    if not 0.001 <= poll <= 60:
        fail("--poll is between 0.001 and 60 seconds.")
    settings = get_settings()

    async def _work(runtime: Runtime) -> None:
        worker = build_webhook_worker(runtime)
        worker.every_s = poll
        await worker.start(sole_worker=False)  # others may be sending: a stopped worker's rows wait for their lease
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        records = "and recording the events on Redis" if isinstance(runtime.bus, RedisEventBus) else "only"
        console.print(f"Webhook worker sending {records}. Ctrl+C stops it.")
        try:
            async with GcPolicy(every_s=runtime.settings.gc_freeze_every_s):  # no full collection mid-send
                await stop.wait()
        finally:
            await stop_webhook_worker(worker)
            stats = worker.stats()
            console.print(f"Webhook worker stopped: {stats['claimed']} deliveries taken in {stats['claims']} claims.")

    run_with_runtime(_work, settings=settings)


COMMANDS: list[click.Command] = [webhooks]
