"""The Twilio provider: the twilio SDK's REST client on its async HTTP client; Twilio's errors become ours here."""

from __future__ import annotations

import base64
import logging
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from sms_gateway.errors import (
    InvalidNumber,
    OptedOut,
    ProviderRejected,
    ProviderUnavailable,
    SmsSendError,
    Throttled,
)
from sms_gateway.provider import AcceptedSms, OutgoingSms

log = logging.getLogger(__name__)
TWILIO_API_BASE = "https://api.twilio.com"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BODY_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # a line feed is text in an SMS; CR and the rest are not
INVALID_NUMBER_CODES = {21211, 21214, 21217, 21401, 21407, 21408, 21612, 21614}


class BasicAuthHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio's async client with the credentials sent as a ready Authorization header (aiohttp deprecated the
    BasicAuth object the SDK builds, and the header is what Twilio reads either way), and the form encoded here in
    one call: the same bytes aiohttp's FormData would make, at a fraction of its cost per message."""

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the SDK's signature)
        allow_redirects: bool = False,
    ) -> Response:
        headers = dict(headers or {})
        form: str | None = None
        if data:
            form = urlencode(data, doseq=True)
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return await super().request(
            method,
            url,
            params=params,
            data=form,
            headers=headers,
            auth=None,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )


def checked(value: str, field: str, *, body: bool = False) -> str:
    """Every value bound for the provider passes here: no CR or control characters (a body may keep line feeds)."""
    if (_BODY_CONTROL if body else _CONTROL).search(value):
        raise ProviderRejected(f"The {field} holds a control character; it was not sent.", field=field)
    return value


def wrap(exc: TwilioRestException) -> SmsSendError:
    code = exc.code if isinstance(exc.code, int) else None
    text = (exc.msg or "").split(": ", 1)[-1] or f"Twilio answered {exc.status}."
    if code == 21610:
        return OptedOut("The recipient has opted out of messages (replied STOP).", provider_code=code)
    if code in INVALID_NUMBER_CODES:
        return InvalidNumber(f"Twilio refused the number: {text}", provider_code=code)
    if code == 20429 or exc.status == 429:
        return Throttled("Twilio asked us to slow down (too many requests).", provider_code=code)
    if exc.status >= 500:
        return ProviderUnavailable(f"Twilio failed ({exc.status}); the message will be retried.", provider_code=code)
    return ProviderRejected(f"Twilio refused the message: {text}", provider_code=code)


class TwilioProvider:
    def __init__(
        self, account_sid: str, auth_token: str, *, api_base: str | None = None, timeout_s: float = 15
    ) -> None:
        self._http = BasicAuthHttpClient(timeout=timeout_s)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        if api_base:  # the SDK's documented Domain.base_url: a regional mirror, or the fake in tests
            self._client.api.base_url = api_base.rstrip("/")

    async def send(self, message: OutgoingSms) -> str:
        sender = checked(message.sender, "sender")
        kwargs: dict[str, Any] = {
            "to": checked(message.to, "number"),
            "body": checked(message.body, "message", body=True),
        }
        if sender.startswith("MG"):
            kwargs["messaging_service_sid"] = sender
        else:
            kwargs["from_"] = sender
        if message.status_callback:
            kwargs["status_callback"] = checked(message.status_callback, "status callback")
        if message.validity_period_s:
            kwargs["validity_period"] = message.validity_period_s
        try:
            created = await self._client.messages.create_async(**kwargs)
        except TwilioRestException as exc:
            raise wrap(exc) from None
        except (aiohttp.ClientError, TimeoutError, TwilioException) as exc:
            raise ProviderUnavailable(f"Twilio could not be reached: {type(exc).__name__}.") from None
        if not created.sid:
            raise ProviderUnavailable("Twilio answered without a message SID.")
        return str(created.sid)

    async def accepted_since(self, *, to: str, sender: str, since: datetime) -> list[AcceptedSms]:
        try:
            found = await self._client.messages.list_async(to=to, from_=sender, limit=50)
        except TwilioRestException as exc:
            raise wrap(exc) from None
        except (aiohttp.ClientError, TimeoutError, TwilioException) as exc:
            raise ProviderUnavailable(f"Twilio could not be reached: {type(exc).__name__}.") from None
        return [
            AcceptedSms(str(m.sid), str(m.to), str(m.from_ or ""), str(m.body or ""), m.date_created)
            for m in found
            if m.date_created is None or m.date_created >= since
        ]

    async def close(self) -> None:
        await self._http.close()
