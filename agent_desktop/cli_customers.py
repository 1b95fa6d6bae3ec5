"""`crm import customers`, `crm export customers` and `crm demo-data`: bulk work with rich progress bars."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from agent_desktop.runtime import Runtime
from crm_core.customers.importer import export_customers_csv, import_customers_csv
from crm_core.users.service import SYSTEM

console = Console(stderr=True, soft_wrap=True)
MAX_REJECTS_SHOWN = 50


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    )


@click.group("import")
def import_group() -> None:
    """Import data from files."""


@import_group.command("customers")
@click.argument("csv_file", type=click.Path(path_type=Path))
def import_customers(csv_file: Path) -> None:
    """Import customers from CSV; rejected rows are listed with their row number and reason."""
    from agent_desktop.cli import run_with_runtime

    async def _work(runtime: Runtime):  # type: ignore[no-untyped-def]
        with _progress() as progress:
            task = progress.add_task("Importing customers", total=None)

            def _advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            return await import_customers_csv(
                csv_file,
                sessions=runtime.sessions,
                actor=SYSTEM,
                region=runtime.settings.default_region,
                progress=_advance,
            )

    report = run_with_runtime(_work)
    console.print(
        f"Imported [green]{report.imported}[/] of {report.total} rows; rejected [red]{len(report.rejected)}[/].",
        highlight=False,
    )
    if report.rejected:
        table = Table("row", "name", "reason", title="Rejected rows (nothing of them was written)")
        for rejected in report.rejected[:MAX_REJECTS_SHOWN]:
            table.add_row(str(rejected.row), rejected.name, rejected.reason)
        console.print(table)
        if len(report.rejected) > MAX_REJECTS_SHOWN:
            console.print(f"… and {len(report.rejected) - MAX_REJECTS_SHOWN} more.")


@click.group("export")
def export_group() -> None:
    """Export data to files."""


@export_group.command("customers")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="File to write (default stdout).")
def export_customers(output: Path | None) -> None:
    """Export every customer as CSV (the same columns the import reads)."""
    from agent_desktop.cli import run_with_runtime

    async def _work(runtime: Runtime) -> int:
        target = output.with_suffix(output.suffix + ".part") if output else None
        out = target.open("w", newline="", encoding="utf-8") if target else sys.stdout
        try:
            with _progress() as progress:
                task = progress.add_task("Exporting customers", total=None)
                async with runtime.unit_of_work() as session:
                    count = await export_customers_csv(
                        out, session=session, actor=SYSTEM, progress=lambda n: progress.update(task, completed=n)
                    )
        except BaseException:
            if target:
                out.close()
                target.unlink(missing_ok=True)
            raise
        if target and output:
            out.close()
            target.replace(output)  # never leave a half-written export under the real name
        return count

    count = run_with_runtime(_work)
    console.print(f"Exported {count} customers.")


@click.command("demo-data")
@click.option("--customers", "customer_count", default=200, show_default=True, help="How many demo customers.")
@click.option("--agent-password", default="agent-password", show_default=True, help="Password of the demo users.")
def demo_data(customer_count: int, agent_password: str) -> None:
    """Create demo users (agents 1001, 1002, 2001, 2002, a supervisor, a marketer), customers and tickets."""
    from agent_desktop.cli import run_with_runtime
    from agent_desktop.demo_data import create_demo_data

    async def _work(runtime: Runtime):  # type: ignore[no-untyped-def]
        with _progress() as progress:
            task = progress.add_task("Demo data", total=customer_count)
            return await create_demo_data(
                runtime,
                customers=customer_count,
                password=agent_password,
                progress=lambda n: progress.update(task, completed=n),
            )

    summary = run_with_runtime(_work)
    console.print(summary, highlight=False)


COMMANDS: list[click.Command] = [import_group, export_group, demo_data]
