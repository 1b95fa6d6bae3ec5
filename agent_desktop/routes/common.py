"""What every blueprint needs: the runtime of this app, the signed-in actor, a JSON body, a date argument."""

from __future__ import annotations

from datetime import date
from typing import Any

from quart import abort, current_app, request

from agent_desktop.auth import current_actor
from agent_desktop.runtime import Runtime
from crm_core.errors import ValidationFailed
from crm_core.users.models import Role
from crm_core.users.service import Actor

STAFF = (Role.AGENT, Role.SUPERVISOR)


def runtime() -> Runtime:
    value: Runtime = current_app.extensions["runtime"]
    return value


def actor() -> Actor:
    signed_in = current_actor()
    if signed_in is None:  # roles_allowed already refused anonymous callers
        abort(401)
    return signed_in


async def json_body() -> dict[str, Any]:
    data = await request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValidationFailed("Send a JSON object.")
    return data


def day_argument(value: str | None, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{value!r} is not a date (YYYY-MM-DD).") from None
