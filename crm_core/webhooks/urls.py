"""Which URLs a webhook may be sent to: http(s) only, and never to a private, loopback, link-local or otherwise
non-public address (SSRF) unless the settings list its network (`webhook_allowed_networks`, for on-prem receivers).
Checked when a subscription is saved and again at every connection, on the address actually dialled."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from crm_core.webhooks.errors import UnsafeWebhookUrl

MAX_URL_LENGTH = 2000
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[IpNetwork, ...]:
    """`10.0.0.0/8, 127.0.0.1` → networks; ValueError naming the bad entry."""
    networks: list[IpNetwork] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP network (e.g. 10.0.0.0/8 or 127.0.0.1)") from None
    return tuple(networks)


@dataclass(frozen=True)
class AddressPolicy:
    allowed_networks: tuple[IpNetwork, ...] = field(default_factory=tuple)

    def allows(self, address: IpAddress) -> bool:
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        if any(address in network for network in self.allowed_networks):
            return True
        return address.is_global and not address.is_multicast

    def check_address(self, host: str, address: str) -> None:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            raise UnsafeWebhookUrl(f"{host} resolved to {address!r}, which is not an IP address.") from None
        if not self.allows(ip):
            raise UnsafeWebhookUrl(
                f"{host} is {ip}, a private or reserved address; an admin may allow its network with the setting "
                "CRM_WEBHOOK_ALLOWED_NETWORKS.",
                field="url",
            )


def check_url_shape(url: str) -> tuple[str, str, int]:
    """The URL is http(s) with a host and no credentials or control characters; returns (scheme, host, port)."""
    url = url.strip()
    if not url:
        raise UnsafeWebhookUrl("Give the receiver's URL.", field="url")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeWebhookUrl(f"The URL is longer than {MAX_URL_LENGTH} characters.", field="url")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UnsafeWebhookUrl("The URL contains a space or a control character.", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeWebhookUrl("The URL is not a valid URL.", field="url") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UnsafeWebhookUrl("Only http:// and https:// URLs can receive webhooks.", field="url")
    if not parts.hostname:
        raise UnsafeWebhookUrl("The URL has no host.", field="url")
    if parts.username is not None or parts.password is not None:
        raise UnsafeWebhookUrl("Put no credentials in the URL; the signature authenticates each delivery.", field="url")
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


async def check_url(url: str, policy: AddressPolicy) -> str:
    """The checked URL (stripped): its shape, and every address its host resolves to now."""
    _scheme, host, port = check_url_shape(url)
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        loop = asyncio.get_running_loop()
        try:
            found = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), 5.0)
        except (OSError, TimeoutError):
            raise UnsafeWebhookUrl(f"The host {host} cannot be resolved.", field="url") from None
        addresses = sorted({str(info[4][0]) for info in found})
    for address in addresses:
        policy.check_address(host, address)
    return url.strip()
