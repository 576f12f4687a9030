"""A real HTTP receiver on loopback that records what it is sent, with scripted answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    # Status codes to answer POSTs with, in order; afterwards 200.
    post_statuses: list[int] = field(default_factory=list)
    get_status: int = 200
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def posts(self) -> list[Received]:
        return [r for r in self.requests if r.method == "POST"]

    def wait_for_posts(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.posts()) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} POSTs, got {len(self.posts())}")
                self.arrived.wait(remaining)
        return self.posts()


@contextmanager
def running_receiver(port: int = 0) -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> Receiver:
            receiver = state["receiver"]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with receiver.arrived:
                receiver.requests.append(
                    Received(self.command, self.path, dict(self.headers.items()), body, time.time())
                )
                receiver.arrived.notify_all()
            return receiver

        def do_GET(self) -> None:
            receiver = self._record()
            self.send_response(receiver.get_status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            receiver = self._record()
            status = receiver.post_statuses.pop(0) if receiver.post_statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    host, port = str(server.server_address[0]), server.server_address[1]
    state["receiver"] = Receiver(url=f"http://{host}:{port}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["receiver"]
    finally:
        server.shutdown()
        server.server_close()
