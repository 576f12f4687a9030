"""A receiver on loopback that holds requests until the test opens its gate, counting how
many it holds at once: the slow receiver of an account that wants to tie up the server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Held:
    method: str
    headers: dict[str, str]
    at: float


@dataclass
class GatedReceiver:
    url: str
    # Held until the gate opens (or `hold_seconds` pass): POSTs always, GETs if asked.
    gate: threading.Event = field(default_factory=threading.Event)
    hold_gets: bool = False
    hold_seconds: float = 60.0
    post_status: int = 200
    requests: list[Held] = field(default_factory=list)
    held_now: int = 0
    held_most: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def posts(self) -> list[Held]:
        with self.changed:
            return [r for r in self.requests if r.method == "POST"]

    def count(self, method: str) -> int:
        with self.changed:
            return sum(1 for r in self.requests if r.method == method)

    def wait_until_holding(self, count: int, timeout: float = 30.0) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: self.held_now >= count, timeout):
                raise AssertionError(f"expected {count} requests held, got {self.held_now}")

    def wait_for(self, method: str, count: int, timeout: float = 30.0) -> None:
        with self.changed:
            if not self.changed.wait_for(
                lambda: sum(1 for r in self.requests if r.method == method) >= count, timeout
            ):
                raise AssertionError(f"expected {count} {method}s, got {self.count(method)}")


@contextmanager
def gated_receiver(**options: object) -> Iterator[GatedReceiver]:
    state: dict[str, GatedReceiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def _hold(self, held: bool) -> GatedReceiver:
            receiver = state["receiver"]
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            with receiver.changed:
                receiver.requests.append(
                    Held(self.command, dict(self.headers.items()), time.monotonic())
                )
                if held:
                    receiver.held_now += 1
                    receiver.held_most = max(receiver.held_most, receiver.held_now)
                receiver.changed.notify_all()
            if held:
                try:
                    receiver.gate.wait(receiver.hold_seconds)
                finally:
                    with receiver.changed:
                        receiver.held_now -= 1
                        receiver.changed.notify_all()
            return receiver

        def _answer(self, status: int) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender gave up at its deadline and closed

        def do_GET(self) -> None:
            self._hold(state["receiver"].hold_gets)
            self._answer(200)

        def do_POST(self) -> None:
            receiver = self._hold(True)
            self._answer(receiver.post_status)

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    host, port = str(server.server_address[0]), server.server_address[1]
    receiver = GatedReceiver(url=f"http://{host}:{port}/hook")
    for name, value in options.items():
        setattr(receiver, name, value)
    state["receiver"] = receiver
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.gate.set()
        server.shutdown()
        server.server_close()
