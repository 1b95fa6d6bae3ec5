"""The real app over a real database (SQLite file or a PostgreSQL database of its own), driven through Quart's test
client: signed in like a browser (CSRF token from the login form), no PBX and no Socket.IO."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quart import Quart
from quart.testing import QuartClient

from agent_desktop.app import create_app
from agent_desktop.runtime import Runtime, build_runtime, migrate_database
from crm_core.settings import load_settings
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, create_user
from tests.conftest import POSTGRES_ADMIN_URL, postgres_admin
from tests.sqlite_template import migrated_sqlite

PASSWORD = "a long test password"
USERS = {
    "agent1001": (Role.AGENT, "1001", ["support"]),
    "agent2001": (Role.AGENT, "2001", ["sales"]),
    "boss": (Role.SUPERVISOR, "9001", []),
    "mkt": (Role.MARKETER, None, []),
    "root": (Role.ADMIN, None, []),
}


@dataclass
class AppUnderTest:
    app: Quart
    runtime: Runtime

    async def client(self, username: str | None) -> tuple[QuartClient, str]:
        """A client signed in as `username` (None: signed out) and the CSRF token its API calls send."""
        client = self.app.test_client()
        page = await client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', await page.get_data(as_text=True))
        assert token is not None
        if username is None:
            return client, token.group(1)
        response = await client.post(
            "/login", form={"csrf_token": token.group(1), "username": username, "password": PASSWORD}
        )
        assert response.status_code == 302, await response.get_data(as_text=True)
        account = await client.get("/account")
        meta = re.search(r'name="csrf-token" content="([^"]+)"', await account.get_data(as_text=True))
        assert meta is not None
        return client, meta.group(1)


@asynccontextmanager
async def database_of_its_own(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database this test may commit to: the app's requests commit, so the shared, rolled-back one will not do."""
    if kind == "sqlite":
        yield migrated_sqlite(tmp_path / "app.db")
        return
    name = f"crm_app_{uuid.uuid4().hex[:12]}"
    await postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        await postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def serve_app(
    database_url: str, tmp_path: Path, *, users: tuple[str, ...] = tuple(USERS), **settings: Any
) -> AsyncIterator[AppUnderTest]:
    """The app over `database_url`, migrated, with these users of USERS (no password change pending; each costs an
    argon2 hash, so a test asks only for those it signs in as)."""
    env = {
        "CRM_DATABASE_URL": database_url,
        "CRM_DATA_DIR": str(tmp_path / "var"),
        "CRM_SECRET_KEY": "test-secret-key-of-reasonable-length",
        **{f"CRM_{k.upper()}": str(v) for k, v in settings.items()},
    }
    runtime = await build_runtime(load_settings(env))
    try:
        await migrate_database(runtime)
        async with runtime.unit_of_work() as session:
            for username in users:
                role, extension, queues = USERS[username]
                await create_user(
                    session=session,
                    actor=SYSTEM,
                    username=username,
                    password=PASSWORD,
                    role=role,
                    extension=extension,
                    queues=queues,
                    display_name=username.title(),
                )
        app = create_app(runtime)
        async with app.test_app():
            yield AppUnderTest(app, runtime)
    finally:
        await runtime.close()
