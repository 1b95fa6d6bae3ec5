"""Errors of sending an SMS, each with a stable code; a provider's own errors are turned into these at its adapter."""

from __future__ import annotations

from crm_core.errors import CrmError


class SmsSendError(CrmError):
    """A provider did not take the message. `retryable` says whether the same send may succeed later."""

    code = "sms_send_failed"
    http_status = 502
    retryable = False

    def __init__(self, message: str, *, provider_code: int | None = None, **details: object) -> None:
        super().__init__(message, provider_code=provider_code, **details)
        self.provider_code = provider_code


class OptedOut(SmsSendError):
    code = "opted_out"
    http_status = 409


class InvalidNumber(SmsSendError):
    code = "invalid_number"
    http_status = 422


class Throttled(SmsSendError):
    code = "throttled"
    http_status = 429
    retryable = True


class ProviderUnavailable(SmsSendError):
    """The provider could not be reached or answered 5xx: the message may be sent again later."""

    code = "provider_unavailable"
    http_status = 503
    retryable = True


class ProviderRejected(SmsSendError):
    """Any other refusal (bad sender, auth, content): not retried; the reason is kept on the message."""

    code = "provider_rejected"


class ProviderNotConfigured(SmsSendError):
    code = "sms_not_configured"
    http_status = 503
