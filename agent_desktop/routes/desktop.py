"""The agent workspace page: server-rendered with the wrap-ups still to save; its live side is the /agent
Socket.IO namespace."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, render_template, session

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import STAFF, actor, runtime
from crm_core.calls.codes import active_dispositions, active_pause_reasons
from crm_core.calls.wrapups import pending_wrapups

blueprint = Blueprint("desktop", __name__)


@blueprint.get("/desktop")
@roles_allowed(*STAFF)
async def desktop() -> Any:
    async with runtime().sessions() as db:
        dispositions = await active_dispositions(session=db)
        pause_reasons = await active_pause_reasons(session=db)
        pending = await pending_wrapups(session=db, actor=actor())
    return await render_template(
        "desktop.html",
        me=dict(session),
        dispositions=dispositions,
        wrapup_seconds=runtime().settings.wrapup_seconds,
        pause_reasons=pause_reasons,
        pending=pending,
    )
