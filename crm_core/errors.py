"""Base error types of the CRM core; each carries a stable code the web edge turns into a response."""

from __future__ import annotations

from typing import Any


class CrmError(Exception):
    """A domain error with a stable machine-readable code and a human sentence."""

    code = "crm_error"
    http_status = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class NotFound(CrmError):
    code = "not_found"
    http_status = 404


class PermissionDenied(CrmError):
    code = "permission_denied"
    http_status = 403


class ValidationFailed(CrmError):
    code = "validation_failed"
    http_status = 422


class Conflict(CrmError):
    code = "conflict"
    http_status = 409


class SettingsError(CrmError):
    """Raised at start-up when a setting is unknown or invalid; its message is one clear sentence."""

    code = "bad_settings"
