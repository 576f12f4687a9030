"""Network backends for httpcore that hold a request to one wall-clock deadline.

A socket timeout bounds one operation: a receiver that trickles a byte just inside it keeps
a request alive for ever. The synchronous backend therefore gives every socket operation
(connect, TLS handshake, each send and each receive) only the time left until the request's
deadline, and refuses to start one once it has passed, so the whole request ends by the
deadline whatever the peer does. The asynchronous side is bounded by cancel scopes instead
(see `webhook_http.send_async`); its backend only remembers the sockets it opened so that
they are closed however the request ends.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import httpcore

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


@dataclass(frozen=True)
class Deadline:
    at: float  # on the time.monotonic() clock

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())


@contextlib.contextmanager
def _mapped(timeout: type[Exception], failure: type[Exception]) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:  # socket.timeout is TimeoutError
        raise timeout(str(exc) or "timed out") from exc
    except OSError as exc:  # ssl.SSLError is an OSError
        raise failure(str(exc)) from exc


class DeadlineSocketStream(httpcore.NetworkStream):
    def __init__(self, sock: socket.socket, deadline: Deadline, opened: list[socket.socket]):
        self._sock = sock
        self._deadline = deadline
        self._opened = opened

    def _arm(self, timeout: type[Exception]) -> None:
        remaining = self._deadline.remaining()
        if remaining <= 0:
            raise timeout("the request's deadline has passed")
        self._sock.settimeout(remaining)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            self._arm(httpcore.ReadTimeout)
            return self._sock.recv(max_bytes)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            while view:
                # One send at a time, each given only what is left: sendall() would restart
                # its timeout for a receiver that drains slowly.
                self._arm(httpcore.WriteTimeout)
                sent = self._sock.send(view)
                view = view[sent:]

    def close(self) -> None:
        self._sock.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            # Since Python 3.5 the socket timeout bounds the whole handshake, not each step.
            self._arm(httpcore.ConnectTimeout)
            tls = ssl_context.wrap_socket(self._sock, server_hostname=server_hostname)
        self._opened.append(tls)
        return DeadlineSocketStream(tls, self._deadline, self._opened)

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "ssl_object":
            return self._sock if isinstance(self._sock, ssl.SSLSocket) else None
        if info == "socket":
            return self._sock
        if info == "client_addr":
            return self._sock.getsockname()
        if info == "server_addr":
            return self._sock.getpeername()
        return None


class DeadlineBackend(httpcore.NetworkBackend):
    """Opens sockets for one request, bounded by its deadline; `close()` closes them all."""

    def __init__(self, deadline: Deadline) -> None:
        self._deadline = deadline
        self._opened: list[socket.socket] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        # `host` is the pinned, checked address: no name is resolved here.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        self._opened.append(sock)
        stream = DeadlineSocketStream(sock, self._deadline, self._opened)
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream._arm(httpcore.ConnectTimeout)
            sock.connect((host, port))
        return stream

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("Webhooks connect over TCP only.")

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self._deadline.remaining()))

    def close(self) -> None:
        for sock in reversed(self._opened):
            sock.close()  # closing twice, or a socket TLS took over, does nothing


class ClosingAsyncBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend that remembers its streams so all of them can be closed.

    A request cancelled half-way through connecting (the deadline) can leave httpcore without
    a reference to the socket it was opening.
    """

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._opened: list[httpcore.AsyncNetworkStream] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        self._opened.append(stream)
        return stream

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("Webhooks connect over TCP only.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    async def aclose(self) -> None:
        # Closing the TCP stream closes any TLS layered on it (httpcore wraps TLS without the
        # close_notify exchange, so nothing here waits on the peer).
        for stream in reversed(self._opened):
            with contextlib.suppress(Exception):
                await stream.aclose()
