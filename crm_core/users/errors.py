"""Errors of the users domain."""

from crm_core.errors import Conflict, CrmError, ValidationFailed


class InvalidCredentials(CrmError):
    code = "invalid_credentials"
    http_status = 401


class UsernameTaken(Conflict):
    code = "username_taken"


class ExtensionTaken(Conflict):
    code = "extension_taken"


class WeakPassword(ValidationFailed):
    code = "weak_password"
