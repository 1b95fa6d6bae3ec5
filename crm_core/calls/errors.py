"""Errors of the calls domain, each with a stable code the web edge and the socket acknowledgements carry."""

from __future__ import annotations

from crm_core.errors import PermissionDenied


class NotYourCall(PermissionDenied):
    """An agent tried to act on a call it did not answer (or, live, is not on): a permission error like any other
    (code `permission_denied`, HTTP 403), typed so callers can tell it from a role refusal."""

    code = "permission_denied"
