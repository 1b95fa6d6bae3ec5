"""A live contact center per test (app, database, bridge, demo PBX)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.desktop.live import LiveCenter, start_center


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[LiveCenter]:
    live = await start_center(tmp_path)
    try:
        yield live
    finally:
        await live.stop()
