"""The composition root: builds the engine, bus and services from settings and hands them to the app and workers."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_core import migrate
from crm_core.bus import EventBus, InMemoryEventBus, RedisEventBus
from crm_core.db import make_engine, make_sessionmaker, unit_of_work
from crm_core.errors import SettingsError
from crm_core.settings import Settings
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, count_users, create_user, generate_password

log = logging.getLogger(__name__)


class DatabaseUnreachable(SettingsError):
    code = "database_unreachable"


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    bus: EventBus
    secret_key: str
    extras: dict[str, Any] = field(default_factory=dict)

    def unit_of_work(self) -> Any:
        return unit_of_work(self.sessions, self.bus)

    async def close(self) -> None:
        if isinstance(self.bus, RedisEventBus):
            await self.bus.close()
        await self.engine.dispose()


def _restrict(path: Path, mode: int) -> None:
    """Make an existing file or folder ours alone (older versions left them world-readable)."""
    try:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            path.chmod(mode)
    except OSError as exc:  # not ours to change (a mount, another owner): say so, do not stop
        log.warning("could not set mode %o on %s: %s", mode, path, exc)


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _restrict(path, 0o700)


def ensure_data_dir(settings: Settings) -> Path:
    """The data directory (database, secret key, recordings) exists and only this user may enter it."""
    _private_dir(settings.data_dir)
    # Our own recordings folder (a configured one belongs to whatever fills it) is made by whoever writes the first
    # recording; inside a 0700 data directory no one else can reach it anyway, but an older one is tightened too.
    if settings.recordings_dir is None and settings.recordings_folder.is_dir():
        _restrict(settings.recordings_folder, 0o700)
    return settings.data_dir


def secure_sqlite_file(settings: Settings) -> Path | None:
    """Create the SQLite file readable by this user only before SQLite opens it (SQLite gives its -wal and -shm
    files the database file's mode), and tighten the mode of one that exists."""
    database = make_url(settings.database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    if not path.parent.is_dir():
        return None  # SQLite will say what is wrong with the path
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # an empty file is an empty SQLite database
    for companion in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        if companion.exists():
            _restrict(companion, 0o600)
    return path


def load_secret_key(settings: Settings) -> str:
    """The session-signing key: from settings, or generated once and kept (mode 600) in the data directory."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = ensure_data_dir(settings) / "secret_key"
    if path.exists():
        _restrict(path, 0o600)
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a left-over .tmp keeps its old mode otherwise
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    tmp.replace(path)
    return key


async def check_database(engine: AsyncEngine, url_for_humans: str) -> None:
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means the same thing to the person starting the server
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatabaseUnreachable(f"Cannot reach the database {url_for_humans}: {reason}.") from None


async def build_runtime(settings: Settings, *, check: bool = True) -> Runtime:
    ensure_data_dir(settings)
    if settings.is_sqlite:
        secure_sqlite_file(settings)
    engine = make_engine(settings.database_url)
    safe_url = engine.url.render_as_string(hide_password=True)
    if check:
        await check_database(engine, safe_url)
    bus: EventBus
    if settings.redis_url:
        redis_bus = RedisEventBus(settings.redis_url)
        await redis_bus.start()
        bus = redis_bus
    else:
        bus = InMemoryEventBus()
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        bus=bus,
        secret_key=load_secret_key(settings),
    )


async def migrate_database(runtime: Runtime) -> None:
    await migrate.upgrade(runtime.engine)


async def ensure_first_admin(runtime: Runtime) -> str | None:
    """On an empty database create `admin`; return the one-time password when it was generated here."""
    async with runtime.unit_of_work() as session:
        if await count_users(session=session):
            return None
        configured = runtime.settings.admin_password
        password = configured.get_secret_value() if configured else generate_password()
        await create_user(
            session=session,
            actor=SYSTEM,
            username="admin",
            password=password,
            role=Role.ADMIN,
            display_name="Administrator",
            must_change_password=configured is None,
        )
    return None if configured else password
