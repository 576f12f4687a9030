"""Outgoing webhook requests: resolve, check the address, connect to exactly that address."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from conveyor.domain.webhook_targets import RefusedTarget, TargetPolicy, parse_webhook_url

TIMEOUT_SECONDS = 10.0
USER_AGENT = "Conveyor-Webhooks/1.0 (Mailchimp-compatible)"


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


Resolver = Callable[..., list[tuple[Any, ...]]]


def resolve_checked(
    host: str, port: int, policy: TargetPolicy, resolver: Resolver = socket.getaddrinfo
) -> str:
    """The first address `host` resolves to, if the policy allows every one of them.

    Refusing when any address is forbidden keeps a name that mixes a public and a link-local
    address from being used at all.
    """
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        policy.check_address(literal)
        return str(literal)
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RefusedTarget(f"The host {host} could not be resolved: {exc.strerror}.") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        policy.check_address(address)
    return str(addresses[0])


def send(
    client: httpx.Client,
    method: str,
    url: str,
    policy: TargetPolicy,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> Attempt:
    """One request, never following redirects; failures become an `Attempt` with an error."""
    started = time.perf_counter()
    try:
        target = parse_webhook_url(url)
        address = resolve_checked(target.host, target.port, policy)
        host_for_url = f"[{address}]" if ":" in address else address
        pinned = f"{target.scheme}://{host_for_url}:{target.port}{target.path_and_query}"
        default_port = 443 if target.scheme == "https" else 80
        host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
        request_headers = {"Host": host_header, "User-Agent": USER_AGENT, **(headers or {})}
        response = client.request(
            method,
            pinned,
            content=content,
            headers=request_headers,
            timeout=timeout,
            follow_redirects=False,
            # TLS still checks the certificate against the name, not the pinned address.
            extensions={"sni_hostname": target.host},
        )
        return Attempt(response.status_code, None, _ms_since(started))
    except RefusedTarget as exc:
        return Attempt(None, str(exc), _ms_since(started))
    except httpx.TimeoutException:
        return Attempt(None, f"No answer within {timeout:g} seconds.", _ms_since(started))
    except httpx.HTTPError as exc:
        return Attempt(None, f"{type(exc).__name__}: {exc}", _ms_since(started))


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
