"""Socket.IO room names: one per agent (its own pops and call states), one for all supervisors, one per user."""

from __future__ import annotations

AGENT_NAMESPACE = "/agent"
SUPERVISOR_NAMESPACE = "/supervisor"


def agent_room(extension: str) -> str:
    return f"agent:{extension}"


def supervisors_room() -> str:
    return "supervisors"


def user_room(user_id: str) -> str:
    """Every socket of one signed-in user, in either namespace: closed together when their sessions end."""
    return f"user:{user_id}"
