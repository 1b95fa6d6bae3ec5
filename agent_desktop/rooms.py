"""Socket.IO room names: one per agent (its own pops and call states), one for all supervisors."""

from __future__ import annotations

AGENT_NAMESPACE = "/agent"
SUPERVISOR_NAMESPACE = "/supervisor"


def agent_room(extension: str) -> str:
    return f"agent:{extension}"


def supervisors_room() -> str:
    return "supervisors"
