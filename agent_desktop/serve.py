"""`crm serve`: the embedded default in one process — web app, Socket.IO, CTI bridge or demo PBX, FastAGI."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from agent_desktop.app import create_asgi
from agent_desktop.cli_recordings import recording_workers
from agent_desktop.cli_webhooks import build_webhook_worker, stop_webhook_worker
from agent_desktop.gc_policy import GcPolicy
from agent_desktop.ivr_service import start_ivr
from agent_desktop.remote_pbx import RemotePbx
from agent_desktop.runtime import build_runtime, ensure_first_admin, migrate_database
from agent_desktop.telephony import start_telephony
from crm_core.customers.import_jobs import ImportWorker
from crm_core.customers.scheduled import PoolReturner
from crm_core.settings import Settings
from crm_core.sla.scheduler import SlaScheduler
from crm_core.tickets.csat import CsatDispatcher, CsatPolicy
from ivr.callback_dialer import CallbackDialer
from recordings.retention import RetentionSweeper
from recordings.store import archive_from_settings
from sms_gateway.automations import AutomationWorker
from sms_gateway.campaigns import CampaignDispatcher
from sms_gateway.outbox import SmsOutbox
from sms_gateway.twilio_provider import TwilioProvider

log = logging.getLogger(__name__)


async def serve_all(settings: Settings, *, announce_admin: Callable[[str], None], web_only: bool = False) -> None:
    runtime = await build_runtime(settings)
    try:
        await migrate_database(runtime)
        password = await ensure_first_admin(runtime)
        if password:
            announce_admin(password)
        if web_only:
            # call controls go to `crm cti` over Redis; pops come from it through the Socket.IO Redis manager
            remote = RemotePbx(settings.redis_url or "", settings.socketio_channel)
            await remote.start()
            try:
                asgi, _sio = create_asgi(runtime, pbx=remote, notify=False)  # type: ignore[arg-type]
                await _serve_http(asgi, settings)
            finally:
                await remote.stop()
            return
        telephony = await start_telephony(runtime)
        runtime.extras["telephony"] = telephony
        ivr = await start_ivr(runtime)
        dialer = CallbackDialer(runtime.sessions, telephony.adapter, every_s=settings.callback_dial_every_s)
        dialer.start()
        pool = PoolReturner(runtime.sessions, protection_days=settings.pool_return_days)
        pool.start()
        imports = ImportWorker(runtime.sessions, region=settings.default_region)
        await imports.start()
        sla_clocks = SlaScheduler(runtime.sessions, runtime.bus)
        sla_clocks.start()
        ingester, transcriber = recording_workers(runtime)  # Vosk in a process pool beside the web app
        ingester.start()
        retention = RetentionSweeper(runtime.sessions, archive=archive_from_settings(settings))
        retention.start()
        if transcriber is not None:
            transcriber.start()
        sms_outbox = await start_sms_outbox(runtime)
        webhooks = build_webhook_worker(runtime)  # this process is the only sender: left-over sends go out now
        await webhooks.start(sole_worker=True)
        campaigns = CampaignDispatcher(runtime.sessions, on_queued=sms_outbox.wake.set) if sms_outbox else None
        csat = CsatDispatcher(
            runtime.sessions, csat_policy(settings), on_queued=sms_outbox.wake.set if sms_outbox else None
        )
        csat.start()
        if campaigns is not None:
            campaigns.start()
        automations = (
            AutomationWorker(
                runtime.sessions,
                region=settings.default_region,
                fallback_sender=settings.sms_sender,
                on_queued=sms_outbox.wake.set,
            )
            if sms_outbox
            else None
        )
        if automations is not None:
            automations.start()
        asgi, _sio = create_asgi(
            runtime,
            pbx=telephony.adapter,
            voice=(ivr.flows, ivr.crm),
            import_worker=imports,
            sms_outbox=sms_outbox,
            webhooks=webhooks,
        )
        try:
            await _serve_http(asgi, settings)
        finally:
            await csat.stop()
            if automations is not None:
                await automations.stop()
            await stop_webhook_worker(webhooks)
            if campaigns is not None:
                await campaigns.stop()
            if sms_outbox is not None:
                await sms_outbox.stop()
                await sms_outbox.provider.close()
            await sla_clocks.stop()
            if transcriber is not None:
                await transcriber.stop()
            await ingester.stop()
            await retention.stop()
            await imports.stop()
            await pool.stop()
            await dialer.stop()
            await ivr.stop()
            await telephony.stop()
    finally:
        await runtime.close()


def csat_policy(settings: Settings) -> CsatPolicy:
    """The CSAT requests as the settings say: on or off, from the agents' SMS sender, after the delay."""
    return CsatPolicy(
        enabled=settings.csat_enabled,
        sms_sender=settings.sms_sender if settings.twilio_account_sid else None,
        delay=timedelta(minutes=settings.csat_delay_minutes),
        text=settings.csat_sms_text,
    )


async def start_sms_outbox(runtime: Any) -> SmsOutbox | None:
    """The SMS outbox worker on Twilio, when Twilio is configured (this process is the only sender)."""
    settings = runtime.settings
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        log.info("SMS: Twilio is not configured (CRM_TWILIO_ACCOUNT_SID, CRM_TWILIO_AUTH_TOKEN); nothing is sent")
        return None
    provider = TwilioProvider(
        settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value(), api_base=settings.twilio_api_base
    )
    outbox = SmsOutbox(
        runtime.sessions,
        provider,
        bus=runtime.bus,
        public_base_url=settings.public_base_url,
        default_mps=settings.sms_sender_mps,
        batch=settings.sms_outbox_batch,
        concurrency=settings.sms_outbox_concurrency,  # overlapping round trips; each sender's rate still paces them
    )
    await outbox.start(sole_worker=True)
    return outbox


async def _serve_http(asgi: Any, settings: Settings) -> None:
    config = Config()
    config.bind = [f"{settings.http_host}:{settings.http_port}"]
    config.accesslog = None
    config.graceful_timeout = 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("serving on http://%s:%s", settings.http_host, settings.http_port)
    async with GcPolicy(every_s=settings.gc_freeze_every_s):  # pops must not wait for the collector (issue #5)
        await hypercorn_serve(asgi, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
