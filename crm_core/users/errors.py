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


class SignInThrottled(CrmError):
    """Too many failed sign-ins for this account or from this address: wait `retry_after` seconds."""

    code = "too_many_sign_ins"
    http_status = 429

    def __init__(self, retry_after: int) -> None:
        unit = "second" if retry_after == 1 else "seconds"
        super().__init__(f"Too many failed sign-ins; try again in {retry_after} {unit}.", retry_after=retry_after)
        self.retry_after = retry_after
