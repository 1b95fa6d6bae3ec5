"""Events of the users domain."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from crm_core.bus import register_event


class RevokeReason(StrEnum):
    SIGNED_OUT = "signed_out"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 (a reason, not a password)
    DEACTIVATED = "deactivated"
    ROLE_CHANGED = "role_changed"


@register_event
@dataclass(frozen=True, slots=True)
class UserSessionsRevoked:
    """Every session a user held ended (their session version moved on): pages and live sockets must let go."""

    user_id: str
    reason: RevokeReason
    revoked_at: datetime
