"""Posting one signed delivery over HTTP (aiohttp): timeouts, no redirects, and the address policy applied to the
address actually dialled (a name that resolves to a refused address is never connected to)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from crm_core.webhooks.errors import UnsafeWebhookUrl
from crm_core.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signature_header
from crm_core.webhooks.urls import AddressPolicy, check_url_shape

USER_AGENT = "callcenter-crm-webhooks/1"


class PolicyResolver(AbstractResolver):
    """The system resolver, keeping only the addresses the policy allows (none left: the connection fails)."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if self._policy.allows(ipaddress.ip_address(r["host"].split("%", 1)[0]))]
        if not allowed:
            raise OSError(f"{host} resolves only to addresses webhooks may not reach")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None  # the receiver's answer; None when there was none
    error: str | None  # why it did not count as delivered

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender:
    def __init__(self, policy: AddressPolicy, *, timeout_s: float = 10.0, connections: int = 100) -> None:
        self.policy = policy
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 5.0))
        self.connections = connections
        self._client: aiohttp.ClientSession | None = None
        self._checked: set[str] = set()

    def _session(self) -> aiohttp.ClientSession:
        if self._client is None or self._client.closed:
            connector = aiohttp.TCPConnector(
                resolver=PolicyResolver(self.policy), limit=self.connections, ttl_dns_cache=60
            )
            self._client = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                headers={"User-Agent": USER_AGENT},
                cookie_jar=aiohttp.DummyCookieJar(),  # a receiver's cookies are never sent back
            )
        return self._client

    def _check(self, url: str) -> None:
        """The URL's shape and (for an IP literal) address, checked once per URL: the checks cost a tenth of a send,
        and a subscription's URL is the same for every delivery."""
        if url in self._checked:
            return
        check_url_shape(url)
        self._check_literal_address(url)
        if len(self._checked) >= 1024:
            self._checked.clear()
        self._checked.add(url)

    def _check_literal_address(self, url: str) -> None:
        # aiohttp does not resolve an IP literal, so the resolver above never sees it: check it here
        host = urlsplit(url).hostname or ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        self.policy.check_address(host, host)

    async def send(self, *, url: str, secret: str, delivery_id: str, event_type: str, body: str) -> Outcome:
        payload = body.encode()
        try:
            self._check(url)
        except UnsafeWebhookUrl as exc:
            return Outcome(None, exc.message[:255])
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(secret, payload),
            DELIVERY_HEADER: delivery_id,
            EVENT_HEADER: event_type,
        }
        try:
            async with self._session().post(url, data=payload, headers=headers, allow_redirects=False) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return Outcome(response.status, None)
                return Outcome(response.status, f"HTTP {response.status} {response.reason or ''}".strip()[:255])
        except TimeoutError:
            return Outcome(None, f"no answer within {self.timeout.total:g} s")
        except aiohttp.ClientError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:255])
        except OSError as exc:
            return Outcome(None, f"connection failed: {exc}"[:255])

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
