"""Hostile webhook receivers: raw socket servers on loopback, one thread per connection.

Each behaviour is what a receiver controlled by an attacker can do to the server that calls
it: answer without end, trickle bytes, redirect, never finish its headers, never accept.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

GIB = 1024**3
_SLICE = bytes(64 * 1024)  # one buffer, sent again and again: the answer is never held


@dataclass
class Hostile:
    host: str
    port: int
    stop: threading.Event = field(default_factory=threading.Event)
    connections: int = 0
    bytes_sent: int = 0
    request_heads: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def count_sent(self, size: int) -> None:
        with self.lock:
            self.bytes_sent += size


Behaviour = Callable[[socket.socket, Hostile], None]


def read_head(conn: socket.socket, server: Hostile) -> bytes:
    """The request line and headers, then the body they announce (closing on unread data
    would reset the connection and lose our own answer)."""
    conn.settimeout(5)
    received = b""
    while b"\r\n\r\n" not in received and len(received) < 64 * 1024:
        chunk = conn.recv(4096)
        if not chunk:
            break
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(4096)
        if not chunk:
            break
        body += chunk
    with server.lock:
        server.request_heads.append(head + b"\r\n\r\n")
    return head


def giant_answer(size: int = GIB, framing: str = "length") -> Behaviour:
    """A 200 whose body is `size` zero bytes: Content-Length, chunked, or until close."""

    def behave(conn: socket.socket, server: Hostile) -> None:
        read_head(conn, server)
        head = {
            "length": f"Content-Length: {size}\r\n",
            "chunked": "Transfer-Encoding: chunked\r\n",
            "close": "Connection: close\r\n",
        }[framing]
        conn.sendall(f"HTTP/1.1 200 OK\r\n{head}\r\n".encode())
        chunk_head = f"{len(_SLICE):x}\r\n".encode()
        sent = 0
        while sent < size and not server.stop.is_set():
            if framing == "chunked":
                conn.sendall(chunk_head)
                conn.sendall(_SLICE)
                conn.sendall(b"\r\n")
            else:
                conn.sendall(_SLICE)
            sent += len(_SLICE)
            server.count_sent(len(_SLICE))

    return behave


def trickle(data: bytes, interval: float = 0.5, after_head: bytes = b"") -> Behaviour:
    """Send `after_head` at once, then `data` one byte every `interval` seconds."""

    def behave(conn: socket.socket, server: Hostile) -> None:
        read_head(conn, server)
        conn.sendall(after_head)
        for byte in data:
            if server.stop.wait(interval):
                return
            conn.sendall(bytes([byte]))
            server.count_sent(1)

    return behave


def redirect(location: str, status: int = 302) -> Behaviour:
    def behave(conn: socket.socket, server: Hostile) -> None:
        read_head(conn, server)
        conn.sendall(
            f"HTTP/1.1 {status} Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
        )

    return behave


def endless_headers(conn: socket.socket, server: Hostile) -> None:
    """A status line, then header lines as fast as the peer takes them, never a blank line."""
    read_head(conn, server)
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    while not server.stop.is_set():
        conn.sendall(line)
        server.count_sent(len(line))


def silent(conn: socket.socket, server: Hostile) -> None:
    """Read the request, never answer."""
    read_head(conn, server)
    server.stop.wait()


def answer(status: int = 200, body: bytes = b"") -> Behaviour:
    def behave(conn: socket.socket, server: Hostile) -> None:
        read_head(conn, server)
        conn.sendall(f"HTTP/1.1 {status} OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)

    return behave


@contextlib.contextmanager
def hostile_receiver(behaviour: Behaviour, host: str = "127.0.0.1") -> Iterator[Hostile]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    listener.listen(16)
    listener.settimeout(0.05)
    server = Hostile(host, listener.getsockname()[1])
    handlers: list[threading.Thread] = []

    def handle(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the caller hanging up is expected
            behaviour(conn, server)

    def accept_loop() -> None:
        while not server.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with server.lock:
                server.connections += 1
            thread = threading.Thread(target=handle, args=(conn,), daemon=True)
            handlers.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        server.stop.set()
        acceptor.join()
        listener.close()
        for thread in handlers:
            thread.join(timeout=10)


@contextlib.contextmanager
def unaccepting_receiver(*, fill_backlog: bool) -> Iterator[Hostile]:
    """A listening socket whose owner never calls accept().

    With `fill_backlog`, the accept queue is filled first, so the kernel drops further SYNs
    and a connect() hangs; without, connect() succeeds and no answer ever comes.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0 if fill_backlog else 16)
    server = Hostile("127.0.0.1", listener.getsockname()[1])
    fillers: list[socket.socket] = []
    try:
        if fill_backlog:
            for _ in range(16):
                filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                fillers.append(filler)
                filler.settimeout(0.3)
                try:
                    filler.connect(("127.0.0.1", server.port))
                except TimeoutError:
                    break  # the queue is full: this SYN was dropped
            else:
                raise AssertionError("the accept queue never filled up")
        yield server
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def tls(behaviour: Behaviour, context: ssl.SSLContext, names_seen: list[str]) -> Behaviour:
    """`behaviour` behind a TLS handshake; records the name each client asked for (SNI)."""

    def remember(sock: ssl.SSLObject, name: str, _: ssl.SSLContext) -> None:
        names_seen.append(name or "")

    context.sni_callback = remember

    def behave(conn: socket.socket, server: Hostile) -> None:
        conn.settimeout(5)
        with context.wrap_socket(conn, server_side=True) as wrapped:
            behaviour(wrapped, server)

    return behave


@dataclass(frozen=True)
class Certificate:
    certfile: Path
    keyfile: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certfile))


def self_signed_certificate(folder: Path, *names: str) -> Certificate:
    """A throwaway certificate for `names` (DNS names or IP addresses), made by openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    alt_names = ",".join(
        f"IP:{name}" if name.replace(".", "").isdigit() or ":" in name else f"DNS:{name}"
        for name in names
    )
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", f"/CN={names[0]}",
         "-addext", f"subjectAltName={alt_names}",
         "-keyout", str(keyfile), "-out", str(certfile)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Certificate(certfile, keyfile)
