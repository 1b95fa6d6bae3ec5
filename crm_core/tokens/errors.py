"""Errors of the API tokens domain."""

from __future__ import annotations

from crm_core.errors import CrmError, ValidationFailed


class InvalidToken(CrmError):
    """No token, a token we never issued, or a revoked one: all answered alike."""

    code = "invalid_token"
    http_status = 401


class MissingScope(CrmError):
    code = "insufficient_scope"
    http_status = 403


class InvalidScopes(ValidationFailed):
    code = "invalid_scopes"
