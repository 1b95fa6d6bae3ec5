"""The agent desktop page (its live side is the /agent Socket.IO namespace)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, render_template, session
from sqlalchemy import select

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import STAFF, runtime
from crm_core.calls.models import Disposition

blueprint = Blueprint("desktop", __name__)
PAUSE_REASONS = ["Break", "Lunch", "Training", "Meeting", "After-call work"]


@blueprint.get("/desktop")
@roles_allowed(*STAFF)
async def desktop() -> Any:
    async with runtime().sessions() as db:
        dispositions = list(await db.scalars(select(Disposition).where(Disposition.active.is_(True))))
    return await render_template(
        "desktop.html",
        me=dict(session),
        dispositions=dispositions,
        wrapup_seconds=runtime().settings.wrapup_seconds,
        pause_reasons=PAUSE_REASONS,
    )
