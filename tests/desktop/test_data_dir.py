"""What the server keeps on disk is this user's alone (folder 0700, files 0600), and the session cookie is sent over
HTTPS only when the public address is https or CRM_COOKIE_SECURE says so."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_desktop.app import create_app
from agent_desktop.runtime import build_runtime, ensure_first_admin, migrate_database
from crm_core.errors import SettingsError
from crm_core.settings import load_settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # what most systems start services with: files world-readable unless told
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize("install", ["fresh", "older"])
async def test_the_data_directory_is_this_users_alone(tmp_path: Path, install: str, usual_umask: None) -> None:
    data = tmp_path / "var"
    if install == "older":  # what earlier versions left behind: everything readable by everyone
        (data / "recordings").mkdir(parents=True)
        (data / "secret_key").write_text("an older secret key of reasonable length")
        (data / "crm.db").touch()
        for path, old in ((data, 0o755), (data / "recordings", 0o755), (data / "secret_key", 0o644)):
            path.chmod(old)
        (data / "crm.db").chmod(0o644)
    settings = load_settings({"CRM_DATABASE_URL": f"sqlite+aiosqlite:///{data / 'crm.db'}", "CRM_DATA_DIR": str(data)})
    runtime = await build_runtime(settings)
    try:
        await migrate_database(runtime)
        await ensure_first_admin(runtime)  # a write: SQLite has its -wal and -shm files open now
        files = {p.name: mode(p) for p in data.iterdir()}
        assert files == {
            **({"recordings": 0o700} if install == "older" else {}),
            "secret_key": 0o600,
            "crm.db": 0o600,
            "crm.db-wal": 0o600,
            "crm.db-shm": 0o600,
        }
        assert mode(data) == 0o700
    finally:
        await runtime.close()
    if install == "older":
        assert runtime.secret_key == "an older secret key of reasonable length"  # kept, only its mode changed


@pytest.mark.parametrize(
    ("environment", "secure"),
    [
        ({}, False),
        ({"CRM_PUBLIC_BASE_URL": "https://crm.example.com"}, True),
        ({"CRM_PUBLIC_BASE_URL": "HTTPS://crm.example.com", "CRM_COOKIE_SECURE": "false"}, False),
        ({"CRM_COOKIE_SECURE": "true"}, True),
    ],
)
async def test_the_session_cookie_is_secure_when_the_site_is_https(
    tmp_path: Path, environment: dict[str, str], secure: bool
) -> None:
    settings = load_settings(
        {
            "CRM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}",
            "CRM_DATA_DIR": str(tmp_path),
            "CRM_SECRET_KEY": "test-secret-key-of-reasonable-length",
            **environment,
        }
    )
    runtime = await build_runtime(settings)
    try:
        app = create_app(runtime)
        response = await app.test_client().get("/login")  # the form's CSRF token starts a session
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("crm_session=") and "HttpOnly" in cookie
        assert ("Secure" in cookie) is secure
    finally:
        await runtime.close()


def test_a_wrong_cookie_secure_setting_is_named() -> None:
    with pytest.raises(SettingsError, match="CRM_COOKIE_SECURE"):
        load_settings({"CRM_COOKIE_SECURE": "sometimes"})
