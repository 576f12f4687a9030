"""Resolving a webhook's host to the one address the request will connect to.

Every address a name resolves to must pass the policy: a name that mixes a public address
with a link-local one is not used at all. The lookup runs on a thread of its own so that the
request's deadline bounds it too (the C resolver has no timeout of ours); a lookup that
outlives its deadline finishes in the background, bounded by the resolver's own timeouts,
and its answer is dropped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from conveyor.domain.webhook_targets import IPAddress, RefusedTarget, TargetPolicy

Resolver = Callable[..., list[tuple[Any, ...]]]
AddressInfos = list[tuple[Any, ...]]


def start_lookup(host: str, port: int, resolver: Resolver) -> Future[AddressInfos]:
    future: Future[AddressInfos] = Future()

    def look_up() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(resolver(host, port, type=socket.SOCK_STREAM))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=look_up, name=f"resolve {host}", daemon=True).start()
    return future


def checked_address(host: str, infos: AddressInfos, policy: TargetPolicy) -> str:
    """The first address of `infos`, if the policy allows every one of them."""
    if not infos:
        raise RefusedTarget(f"The host {host} resolved to no address.")
    addresses: list[IPAddress] = []
    for info in infos:
        try:
            addresses.append(ipaddress.ip_address(info[4][0]))
        except ValueError:
            raise RefusedTarget(f"The host {host} resolved to something not an address.") from None
    for address in addresses:
        reason = policy.refusal(address)
        if reason is not None:
            raise RefusedTarget(f"The host {host} resolves to a refused address: {reason}")
    return str(addresses[0])


def resolve_within(
    host: str, port: int, policy: TargetPolicy, resolver: Resolver, seconds: float
) -> str:
    """The checked address of `host`; `TimeoutError` if the lookup takes over `seconds`."""
    future = start_lookup(host, port, resolver)
    try:
        infos = future.result(timeout=seconds)
    except socket.gaierror as exc:
        raise RefusedTarget(f"The host {host} could not be resolved: {exc.strerror}.") from None
    return checked_address(host, infos, policy)


async def resolve_async(host: str, port: int, policy: TargetPolicy, resolver: Resolver) -> str:
    """The checked address of `host`, awaited on the event loop (bound it with a cancel scope)."""
    future = start_lookup(host, port, resolver)
    try:
        infos = await asyncio.wrap_future(future)
    except socket.gaierror as exc:
        raise RefusedTarget(f"The host {host} could not be resolved: {exc.strerror}.") from None
    return checked_address(host, infos, policy)


def resolve_checked(
    host: str, port: int, policy: TargetPolicy, resolver: Resolver = socket.getaddrinfo
) -> str:
    """The address a request to `host` connects to, if the policy allows it (no deadline)."""
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
    return checked_address(host, infos, policy)
