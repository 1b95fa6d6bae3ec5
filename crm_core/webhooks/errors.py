"""Errors of the webhooks domain, each with a stable code."""

from __future__ import annotations

from crm_core.errors import ValidationFailed


class UnsafeWebhookUrl(ValidationFailed):
    """The URL is not http(s), or it leads to an address the settings do not allow (SSRF)."""

    code = "unsafe_webhook_url"
