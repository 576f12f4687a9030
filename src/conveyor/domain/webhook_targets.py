"""Where batch webhooks may point.

Policy: http and https only. Link-local (169.254.0.0/16, fe80::/10 — cloud metadata lives
there), unspecified, multicast and reserved addresses are always refused. Loopback and private
networks are allowed by default, because a self-hosted server's receivers are usually internal;
a deployment that serves untrusted accounts turns them off. The check runs on the address that
is actually connected to, after resolution, so a name cannot be re-pointed between the check
and the request (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedTarget(ValueError):
    """The URL or the address it resolves to is not allowed; the message says why."""


@dataclass(frozen=True)
class TargetPolicy:
    allow_loopback: bool = True
    allow_private: bool = True

    def check_address(self, address: IPAddress) -> None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_link_local:
            raise RefusedTarget(f"{address} is a link-local address; webhooks may not use it.")
        if address.is_unspecified:
            raise RefusedTarget(f"{address} is the unspecified address.")
        if address.is_multicast:
            raise RefusedTarget(f"{address} is a multicast address.")
        if address.is_loopback:
            if not self.allow_loopback:
                raise RefusedTarget(f"{address} is a loopback address, refused by policy.")
            return
        if address.is_private:
            if not self.allow_private:
                raise RefusedTarget(f"{address} is a private address, refused by policy.")
            return
        if address.is_reserved:
            raise RefusedTarget(f"{address} is a reserved address.")


@dataclass(frozen=True)
class WebhookUrl:
    scheme: str
    host: str
    port: int
    path_and_query: str


def parse_webhook_url(url: str) -> WebhookUrl:
    if len(url) > 2000:
        raise RefusedTarget("The webhook URL is longer than 2000 characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedTarget(f"The webhook URL is not valid: {exc}.") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedTarget("Webhook URLs must use http or https.")
    if not parts.hostname:
        raise RefusedTarget("The webhook URL has no host.")
    if parts.username or parts.password:
        raise RefusedTarget("The webhook URL must not carry credentials.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    default_port = 443 if parts.scheme == "https" else 80
    return WebhookUrl(parts.scheme, parts.hostname, port or default_port, path)
