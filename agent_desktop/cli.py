"""The `crm` command: serve, migrate, users, customer import/export, demo data, and the scaled-out processes."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from agent_desktop import cli_customers, cli_ivr, cli_recordings, cli_telephony, cli_webhooks
from agent_desktop.runtime import Runtime, build_runtime, ensure_first_admin, migrate_database
from crm_core.errors import CrmError
from crm_core.settings import Settings, load_settings
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, create_user, generate_password
from ivr.flow import FlowError

console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def fail(message: str) -> None:
    console.print(f"[bold red]Error:[/] {message}", highlight=False)
    sys.exit(2)


def get_settings() -> Settings:
    try:
        return load_settings()
    except CrmError as exc:
        fail(exc.message)
        raise  # unreachable; keeps type checkers quiet


def run_with_runtime(work: Callable[[Runtime], Awaitable[T]], *, settings: Settings | None = None) -> T:
    """Build the runtime, run `work`, close it; a domain error becomes one clear line, never a traceback."""
    settings = settings or get_settings()

    async def _main() -> T:
        runtime = await build_runtime(settings)
        try:
            return await work(runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(_main())
    except CrmError as exc:
        fail(exc.message)
        raise
    except FlowError as exc:
        fail(str(exc))
        raise
    except OSError as exc:  # a port in use, a folder we may not write
        fail(f"{exc.strerror or exc}{f' ({exc.filename})' if getattr(exc, 'filename', None) else ''}.")
        raise


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def cli(verbose: bool) -> None:
    """Contact-center CRM."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@cli.command()
def migrate() -> None:
    """Bring the database schema up to date."""

    async def _work(runtime: Runtime) -> None:
        await migrate_database(runtime)
        password = await ensure_first_admin(runtime)
        if password:
            announce_admin(password)

    run_with_runtime(_work)
    console.print("[green]Database is up to date.[/]")


def announce_admin(password: str) -> None:
    console.print(
        "\n[bold]First start:[/] sign in as [bold]admin[/] with the one-time password "
        f"[bold yellow]{password}[/] (you will be asked to change it).\n",
        highlight=False,
    )


@cli.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.AGENT.value, show_default=True)
@click.option("--name", "display_name", default=None, help="Name shown to colleagues.")
@click.option("--extension", default=None, help="The agent's device extension on the PBX, e.g. 1001.")
@click.option("--queue", "queues", multiple=True, help="A queue the agent works (repeatable).")
@click.option("--password", default=None, help="Leave out to generate a one-time password.")
def create_user_command(
    username: str,
    role: str,
    display_name: str | None,
    extension: str | None,
    queues: tuple[str, ...],
    password: str | None,
) -> None:
    """Create a user (agent, supervisor, marketer or admin)."""
    generated = password is None
    secret = password or generate_password()

    async def _work(runtime: Runtime) -> None:
        async with runtime.unit_of_work() as session:
            await create_user(
                session=session,
                actor=SYSTEM,
                username=username,
                password=secret,
                role=Role(role),
                display_name=display_name,
                extension=extension,
                queues=list(queues),
                must_change_password=generated,
            )

    run_with_runtime(_work)
    console.print(f"Created {role} [bold]{username}[/].", highlight=False)
    if generated:
        console.print(f"One-time password: [bold yellow]{secret}[/]", highlight=False)


@cli.command()
@click.option("--host", default=None, help="Address to listen on (default from CRM_HTTP_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (default from CRM_HTTP_PORT).")
@click.option(
    "--web-only",
    is_flag=True,
    help="Scaled out: only the web app; `crm cti` bridges the PBX and emits through CRM_REDIS_URL.",
)
def serve(host: str | None, port: int | None, web_only: bool) -> None:
    """Start the web app, the CTI bridge (or the demo PBX) and the FastAGI server in one process."""
    from agent_desktop.serve import serve_all

    settings = get_settings()
    overrides: dict[str, Any] = {}
    if host:
        overrides["http_host"] = host
    if port:
        overrides["http_port"] = port
    if overrides:
        settings = settings.model_copy(update=overrides)
    try:
        if web_only and not settings.redis_url:
            fail("--web-only needs CRM_REDIS_URL: that is how the CTI process reaches this worker's agents.")
        asyncio.run(serve_all(settings, announce_admin=announce_admin, web_only=web_only))
    except CrmError as exc:
        fail(exc.message)
    except FlowError as exc:
        fail(str(exc))
    except OSError as exc:  # most often: a port already in use (CRM_HTTP_PORT, CRM_AGI_PORT, CRM_DEMO_PBX_PORT)
        fail(f"Cannot start: {exc.strerror or exc}. Is another server using the same port?")
    except KeyboardInterrupt:
        pass


for _module in (cli_customers, cli_telephony, cli_ivr, cli_recordings, cli_webhooks):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    cli()
