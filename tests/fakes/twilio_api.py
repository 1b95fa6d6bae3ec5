"""A fake of Twilio's Messages resource: a real HTTP server on 127.0.0.1 that answers like api.twilio.com (Basic
auth, SIDs, Twilio's JSON and error bodies), signs its status callbacks and inbound webhooks with the account's
auth token (twilio's RequestValidator algorithm), and refuses chosen destinations with Twilio's error codes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

API_VERSION = "2010-04-01"
# Twilio's own wording and HTTP status for the errors the fake can answer
ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    21211: (400, "The 'To' number is not a valid phone number."),
    21602: (400, "Message body is required."),
    21604: (400, "A 'To' phone number is required."),
    21606: (400, "The 'From' phone number provided is not a valid message-capable Twilio phone number."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
}
DELIVERY_ERRORS = {30003: "Unreachable destination handset", 30005: "Unknown destination handset"}


def error_body(code: int) -> tuple[int, dict[str, Any]]:
    status, message = ERRORS[code]
    return status, {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    return str(RequestValidator(auth_token).compute_signature(url, params))


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


@dataclass
class Refusal:
    code: int
    times: int | None  # None: every time


@dataclass
class FakeTwilio:
    account_sid: str = "AC" + "1" * 32
    auth_token: str = "fake-auth-token-0123456789abcdef"
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    accepted: list[dict[str, Any]] = field(default_factory=list)  # in the order the API accepted them
    requests: int = 0
    refused: list[tuple[str, int]] = field(default_factory=list)  # (to, code) answered with an error
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # status callbacks posted, with their answer
    _refusals: dict[str, Refusal] = field(default_factory=dict)
    _outcomes: dict[str, tuple[str, int]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    _http: aiohttp.ClientSession | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _changed: asyncio.Condition | None = None
    base_url: str = ""
    send_callbacks: bool = True

    # --- what a test asks of it -------------------------------------------------------------------------------

    def refuse(self, to: str, code: int, *, times: int | None = None) -> None:
        """Answer sends to `to` with Twilio error `code` (21610, 21211, 20429 ...), `times` times or always."""
        assert code in ERRORS
        self._refusals[to] = Refusal(code, times)

    def deliver_as(self, to: str, status: str, error_code: int) -> None:
        """Messages to `to` end `undelivered` or `failed` with a carrier error (30003, 30005) instead of delivered."""
        assert status in ("undelivered", "failed") and error_code in DELIVERY_ERRORS
        self._outcomes[to] = (status, error_code)

    def sent_to(self, to: str) -> list[dict[str, Any]]:
        return [m for m in self.accepted if m["to"] == to]

    async def wait_for(self, predicate: Any, within: float = 10) -> None:
        """Until predicate(self) holds (woken by every request and callback)."""
        assert self._changed is not None

        async def look() -> None:
            assert self._changed is not None
            async with self._changed:
                await self._changed.wait_for(lambda: bool(predicate(self)))

        await asyncio.wait_for(look(), within)

    async def text_in(self, url: str, *, from_: str, to: str, body: str, sid: str | None = None) -> int:
        """A customer's text: Twilio's inbound-message webhook, signed, posted to `url`; returns the HTTP status."""
        params = {
            "ToCountry": "US",
            "SmsMessageSid": sid or new_sid("SM"),
            "NumMedia": "0",
            "SmsSid": "",
            "SmsStatus": "received",
            "Body": body,
            "To": to,
            "NumSegments": "1",
            "MessageSid": "",
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": API_VERSION,
        }
        params["SmsSid"] = params["MessageSid"] = params["SmsMessageSid"]
        return await self.post_signed(url, params)

    async def post_signed(self, url: str, params: dict[str, str], *, signature: str | None = None) -> int:
        assert self._http is not None
        headers = {"X-Twilio-Signature": signature if signature is not None else sign(self.auth_token, url, params)}
        async with self._http.post(url, data=params, headers=headers) as response:
            await response.read()
            return response.status

    # --- the server -------------------------------------------------------------------------------------------

    async def start(self) -> str:
        self._changed = asyncio.Condition()
        app = web.Application()
        base = f"/{API_VERSION}/Accounts/{{account}}/Messages"
        app.router.add_post(base + ".json", self._create)
        app.router.add_get(base + ".json", self._list)
        app.router.add_get(base + "/{sid}.json", self._fetch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._http = aiohttp.ClientSession()
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def settle(self) -> None:
        """Wait until every status callback started so far has been posted."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.account_sid == request.match_info["account"] and password == self.auth_token

    def _error(self, code: int) -> web.Response:
        status, body = error_body(code)
        return web.json_response(body, status=status)

    async def _create(self, request: web.Request) -> web.Response:
        self.requests += 1
        try:
            if not self._authorized(request):
                return self._error(20003)
            form = await request.post()
            to = str(form.get("To", ""))
            body = str(form.get("Body", ""))
            sender = str(form.get("From", ""))
            service = str(form.get("MessagingServiceSid", ""))
            if not to:
                return self._error(21604)
            if not body:
                return self._error(21602)
            if not sender and not service:
                return self._error(21606)
            refusal = self._refusals.get(to)
            if refusal is not None:
                if refusal.times is not None:
                    refusal.times -= 1
                    if refusal.times <= 0:
                        del self._refusals[to]
                self.refused.append((to, refusal.code))
                return self._error(refusal.code)
            now = datetime.now(UTC)
            sid = new_sid("SM")
            message = {
                "account_sid": self.account_sid,
                "api_version": API_VERSION,
                "body": body,
                "date_created": format_datetime(now),
                "date_sent": None,
                "date_updated": format_datetime(now),
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": sender or None,
                "messaging_service_sid": service or None,
                "num_media": "0",
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "accepted" if service and not sender else "queued",
                "subresource_uris": {"media": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
                "to": to,
                "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
                "validity_period": str(form.get("ValidityPeriod", "")) or None,
            }
            self.messages[sid] = message
            self.accepted.append(message)
            callback = str(form.get("StatusCallback", ""))
            if callback and self.send_callbacks:
                task = asyncio.create_task(self._callbacks(message, callback))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return web.json_response(message, status=201)
        finally:
            await self._notify()

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(20003)
        to = request.query.get("To")
        sender = request.query.get("From")
        found = [m for m in self.accepted if (to is None or m["to"] == to) and (sender is None or m["from"] == sender)]
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"
        return web.json_response(
            {
                "messages": list(reversed(found))[:1000],  # newest first, like Twilio
                "end": max(len(found) - 1, 0),
                "first_page_uri": uri,
                "next_page_uri": None,
                "page": 0,
                "page_size": 1000,
                "previous_page_uri": None,
                "start": 0,
                "uri": uri,
            }
        )

    async def _fetch(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(20003)
        message = self.messages.get(request.match_info["sid"])
        if message is None:
            return self._error(20404)
        return web.json_response(message)

    async def _callbacks(self, message: dict[str, Any], url: str) -> None:
        final, error_code = self._outcomes.get(message["to"], ("delivered", 0))
        for status in ("queued", "sent", final):
            message["status"] = status
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": API_VERSION,
                "From": message["from"] or "",
                "MessageSid": message["sid"],
                "MessageStatus": status,
                "SmsSid": message["sid"],
                "SmsStatus": status,
                "To": message["to"],
            }
            if message["messaging_service_sid"]:
                params["MessagingServiceSid"] = message["messaging_service_sid"]
            if status in ("undelivered", "failed"):
                params["ErrorCode"] = str(error_code)
                message["error_code"] = error_code
                message["error_message"] = DELIVERY_ERRORS[error_code]
            try:
                answer = await self.post_signed(url, params)
            except aiohttp.ClientError as exc:
                answer = -1
                self.callbacks.append({**params, "answer": answer, "error": str(exc)})
            else:
                self.callbacks.append({**params, "answer": answer})
            await self._notify()
