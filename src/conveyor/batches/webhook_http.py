"""Outgoing webhook requests, each held to one deadline and a few KiB of answer.

A request parses the URL (`parse_webhook_url`), resolves the host and checks every address
against the `TargetPolicy`, then connects to exactly the checked address on a connection of
its own, sends the request with the original name in `Host` and in TLS (SNI and certificate
check), reads the status, headers and at most `answer_cap_bytes` of the body, and closes.
Redirects are never followed. The whole of it (lookup, connect, TLS, send, headers, the
capped body read) ends by the deadline whatever the receiver does: the synchronous `send`
gives each socket operation only the time left (`outbound_deadline`), the asynchronous
`send_async` runs each stage in a cancel scope. Both share everything else, so they behave
the same, and both report an `Attempt` instead of raising.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from typing import cast

import anyio
import httpcore
import httpx

from conveyor.batches.outbound_deadline import ClosingAsyncBackend, Deadline, DeadlineBackend
from conveyor.batches.outbound_resolve import (
    Resolver,
    resolve_async,
    resolve_checked,
    resolve_within,
)
from conveyor.domain.webhook_targets import (
    RefusedTarget,
    TargetPolicy,
    WebhookUrl,
    parse_webhook_url,
)

__all__ = ["Attempt", "Outbound", "resolve_checked", "send", "send_async"]

TIMEOUT_SECONDS = 10.0
ANSWER_CAP_BYTES = 4096
USER_AGENT = "Conveyor-Webhooks/1.0 (Mailchimp-compatible)"

# What httpcore raises for a failed exchange (its exceptions share no base class).
_EXCHANGE_ERRORS = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError)


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Outbound:
    """What outbound requests share: the resolver, the answer cap and the TLS settings.

    One per process, shared by worker threads and the event loop alike: it holds no
    connection (every request opens and closes its own, so a TLS session verified for one
    name never carries a request for another name on the same address).
    """

    def __init__(
        self,
        *,
        resolver: Resolver = socket.getaddrinfo,
        answer_cap_bytes: int = ANSWER_CAP_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.resolver = resolver
        self.answer_cap_bytes = answer_cap_bytes
        self._ssl_context = ssl_context
        self._ssl_lock = threading.Lock()

    def tls_context(self) -> ssl.SSLContext:
        # Made on first use: loading the CA bundle costs milliseconds.
        with self._ssl_lock:
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()
            return self._ssl_context


@dataclass(frozen=True)
class _Exchange:
    """One request to one checked address."""

    request: httpcore.Request
    ssl_context: ssl.SSLContext | None

    @property
    def origin(self) -> httpcore.Origin:
        return self.request.url.origin


def _prepare(
    outbound: Outbound,
    target: WebhookUrl,
    address: str,
    method: str,
    content: bytes | None,
    headers: dict[str, str] | None,
    deadline: Deadline,
) -> _Exchange:
    # Keyed by lower-case name, sent with the caller's spelling (some receivers care).
    fields = {"user-agent": ("User-Agent", USER_AGENT)}
    fields.update((name.lower(), (name, value)) for name, value in (headers or {}).items())
    # Not the caller's to set: the name the URL gave, one request per connection, and the
    # length of exactly the body sent.
    fields["host"] = ("Host", target.host_header)
    fields["connection"] = ("Connection", "close")
    fields.pop("transfer-encoding", None)
    fields.pop("content-length", None)
    if content is not None:
        fields["content-length"] = ("Content-Length", str(len(content)))
    remaining = deadline.remaining()
    request = httpcore.Request(
        method.encode("ascii"),
        httpcore.URL(
            scheme=target.scheme.encode("ascii"),
            host=address.encode("ascii"),
            port=target.port,
            target=target.path_and_query.encode("ascii"),
        ),
        headers=[
            (name.encode("ascii"), value.encode("latin-1")) for name, value in fields.values()
        ],
        content=content or b"",
        extensions={
            "timeout": {"connect": remaining, "read": remaining, "write": remaining},
            # TLS checks the certificate against the name, not the pinned address.
            "sni_hostname": target.host,
        },
    )
    ssl_context = outbound.tls_context() if target.scheme == "https" else None
    return _Exchange(request, ssl_context)


def send(
    outbound: Outbound,
    method: str,
    url: str,
    policy: TargetPolicy,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> Attempt:
    """One request from a worker thread, over by `timeout` seconds whatever the peer does."""
    started = time.perf_counter()
    deadline = Deadline.after(timeout)
    try:
        target = parse_webhook_url(url)
        if target.address is not None:
            policy.check_address(target.address)
            address = target.host
        else:
            address = resolve_within(
                target.host, target.port, policy, outbound.resolver, deadline.remaining()
            )
        exchange = _prepare(outbound, target, address, method, content, headers, deadline)
        status = _run(exchange, outbound.answer_cap_bytes, deadline)
    except RefusedTarget as exc:
        return Attempt(None, str(exc), _ms_since(started))
    except (TimeoutError, httpcore.TimeoutException):
        return Attempt(None, _no_answer(timeout), _ms_since(started))
    except _EXCHANGE_ERRORS as exc:
        return Attempt(None, _failure(exc), _ms_since(started))
    return _answered(status, started)


async def send_async(
    client: Outbound,
    method: str,
    url: str,
    policy: TargetPolicy,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> Attempt:
    """`send` on the event loop (asyncio): the same checks, deadline, cap and outcomes."""
    started = time.perf_counter()
    deadline = Deadline.after(timeout)
    try:
        target = parse_webhook_url(url)
        if target.address is not None:
            policy.check_address(target.address)
            address = target.host
        else:
            with anyio.fail_after(deadline.remaining()):
                address = await resolve_async(target.host, target.port, policy, client.resolver)
        exchange = _prepare(client, target, address, method, content, headers, deadline)
        status = await _run_async(exchange, client.answer_cap_bytes, deadline)
    except RefusedTarget as exc:
        return Attempt(None, str(exc), _ms_since(started))
    except (TimeoutError, httpcore.TimeoutException):
        return Attempt(None, _no_answer(timeout), _ms_since(started))
    except _EXCHANGE_ERRORS as exc:
        return Attempt(None, _failure(exc), _ms_since(started))
    return _answered(status, started)


def _run(exchange: _Exchange, cap: int, deadline: Deadline) -> int:
    backend = DeadlineBackend(deadline)
    connection = httpcore.HTTPConnection(
        exchange.origin, ssl_context=exchange.ssl_context, network_backend=backend
    )
    try:
        response = connection.handle_request(exchange.request)
        try:
            with contextlib.closing(cast(Generator[bytes], response.iter_stream())) as chunks:
                _read_at_most(chunks, cap)
        except _EXCHANGE_ERRORS:
            pass  # the status and headers are the answer; the body is only drained politely
        finally:
            response.close()
        return response.status
    finally:
        connection.close()
        backend.close()


async def _run_async(exchange: _Exchange, cap: int, deadline: Deadline) -> int:
    backend = ClosingAsyncBackend()
    connection = httpcore.AsyncHTTPConnection(
        exchange.origin, ssl_context=exchange.ssl_context, network_backend=backend
    )
    try:
        with anyio.fail_after(deadline.remaining()):
            response = await connection.handle_async_request(exchange.request)
        try:
            with anyio.move_on_after(deadline.remaining()):
                chunks = cast(AsyncGenerator[bytes], response.aiter_stream())
                async with contextlib.aclosing(chunks):
                    await _read_at_most_async(chunks, cap)
        except _EXCHANGE_ERRORS:
            pass  # as in _run
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
        return response.status
    finally:
        # Shielded: the deadline may have cancelled the scope; closing never waits on the peer.
        with anyio.CancelScope(shield=True):
            await connection.aclose()
            await backend.aclose()


def _read_at_most(chunks: Iterator[bytes], cap: int) -> None:
    # Reading the start of the answer lets a receiver's short reply end cleanly (closing on
    # unread data resets the connection); everything past the cap is never read.
    received = 0
    for chunk in chunks:
        received += len(chunk)
        if received >= cap:
            return


async def _read_at_most_async(chunks: AsyncIterator[bytes], cap: int) -> None:
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received >= cap:
            return


def _answered(status: int, started: float) -> Attempt:
    error = None
    if 300 <= status < 400:
        error = f"The receiver answered {status}, a redirect; webhooks do not follow redirects."
    return Attempt(status, error, _ms_since(started))


def _no_answer(timeout: float) -> str:
    return f"No answer within {timeout:g} seconds."


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
