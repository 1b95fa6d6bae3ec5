"""A migrated SQLite database to copy: migrating an empty database takes about half a second, copying the migrated
file about a millisecond, and most tests need a fresh database at head. Tests of the migrations themselves (and of
`crm serve` on an empty data directory) still migrate from nothing."""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
import threading
from pathlib import Path

from crm_core import migrate
from crm_core.db import make_engine

_lock = threading.Lock()
_template: Path | None = None


async def _migrate(path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


def _build() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="crm-template-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "crm.db"
    done: list[BaseException | None] = []

    def run() -> None:  # a thread of its own: callers are often inside a running event loop
        try:
            asyncio.run(_migrate(path))
            done.append(None)
        except BaseException as exc:  # handed to the caller
            done.append(exc)

    worker = threading.Thread(target=run, name="sqlite-template")
    worker.start()
    worker.join()
    if done[0] is not None:
        raise done[0]
    for leftover in ("-wal", "-shm", "-journal"):  # every page is in the main file once the engine is closed
        assert not Path(f"{path}{leftover}").exists(), f"{path}{leftover} left behind"
    return path


def migrated_sqlite(path: Path) -> str:
    """The URL of a SQLite database at `path`, migrated to head (a copy of the template), unless one is there."""
    global _template
    with _lock:
        if _template is None:
            _template = _build()
    if not path.exists():
        shutil.copyfile(_template, path)
    return f"sqlite+aiosqlite:///{path}"
