"""A live contact center per test (the real app over HTTP), and API tokens made through the service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from crm_core.tokens.service import create_token
from crm_core.users.service import SYSTEM
from tests.desktop.live import LiveCenter, start_center


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[LiveCenter]:
    live = await start_center(tmp_path)
    try:
        yield live
    finally:
        await live.stop()


async def issue(center: LiveCenter, name: str, scopes: Iterable[str], rate_per_minute: int = 6000) -> tuple[str, str]:
    """(token id, secret) of a new token, made as an admin makes it."""
    async with center.runtime.unit_of_work() as db:
        token, secret = await create_token(
            session=db, actor=SYSTEM, name=name, scopes=scopes, rate_per_minute=rate_per_minute
        )
        return token.id, secret
