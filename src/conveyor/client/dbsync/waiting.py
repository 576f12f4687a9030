"""Waiting for a batch: by polling, or by a batch webhook received on a small local server.

The webhook receiver answers the validation GET, checks ``X-Mailchimp-Signature`` on the raw
body of every POST, and wakes the waiter when its batch is reported finished. A delivery can
be late or lost, so the waiter also polls, rarely, and always confirms with a status read.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from conveyor.client.client import Client
from conveyor.client.dbsync.errors import SyncError
from conveyor.client.errors import ConveyorApiError, WaitTimeout
from conveyor.client.models import Batch
from conveyor.client.webhooks import (
    SIGNATURE_HEADER,
    batch_from_webhook,
    parse_webhook_body,
    verify_signature,
)

# Without a delivery, the status is still read this often: a lost delivery costs a minute at
# most, not the whole timeout.
WEBHOOK_FALLBACK_POLL = 60.0
_MAX_BODY = 1 << 20


class Waiter(Protocol):
    def wait(
        self, batch_id: str, *, timeout: float, progress: Callable[[Batch], None] | None
    ) -> Batch: ...

    def close(self) -> None: ...


class PollingWaiter:
    def __init__(self, client: Client) -> None:
        self.client = client

    def wait(
        self, batch_id: str, *, timeout: float, progress: Callable[[Batch], None] | None
    ) -> Batch:
        return self.client.wait(batch_id, timeout=timeout, progress=progress)

    def close(self) -> None:
        pass


def parse_listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise SyncError(f"--webhook-listen wants HOST:PORT (like 127.0.0.1:8765), got {value!r}")
    return host.strip("[]"), int(port)


class WebhookWaiter:
    """Registers a batch webhook that points at a receiver it runs; removes it on close."""

    def __init__(
        self,
        client: Client,
        listen: str,
        *,
        public_url: str | None = None,
        fallback_poll: float = WEBHOOK_FALLBACK_POLL,
    ) -> None:
        self.client = client
        self.fallback_poll = fallback_poll
        self._finished: set[str] = set()
        self._changed = threading.Condition()
        self._secret: str | None = None
        self.rejected = 0
        self.received = 0
        host, port = parse_listen_address(listen)
        if public_url is None and host in ("", "0.0.0.0", "::"):
            raise SyncError(
                "--webhook-listen on all interfaces needs --webhook-url: the address the "
                "server reaches this receiver at"
            )
        token = secrets.token_urlsafe(16)
        self._path = f"/conveyor-sync/{token}"
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        bound_host, bound_port = str(self._server.server_address[0]), self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sync-webhook", daemon=True
        )
        self._thread.start()
        if public_url is None:
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            url = f"http://{shown}:{bound_port}{self._path}"
        else:
            url = public_url.rstrip("/") + self._path
        self.url = url
        try:
            webhook = client.add_webhook(url)
        except BaseException:
            self._stop_server()
            raise
        self.webhook_id = webhook.id
        self._secret = webhook.secret

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        waiter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # the server checks the URL with a GET on creation
                self._answer(200 if self.path == waiter._path else 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if self.path != waiter._path or length > _MAX_BODY:
                    self._answer(404)
                    return
                body = self.rfile.read(length)
                signature = self.headers.get(SIGNATURE_HEADER)
                secret = waiter._secret
                # Unsigned deliveries are taken only when the server gave no secret (as
                # Mailchimp did before it signed): a status read confirms every wake-up anyway.
                if secret is not None and not verify_signature(secret, signature, body):
                    waiter.rejected += 1
                    self._answer(401)
                    return
                try:
                    batch = batch_from_webhook(parse_webhook_body(body))
                except ValueError:
                    self._answer(400)
                    return
                waiter._delivered(batch)
                self._answer(200)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _delivered(self, batch: Batch) -> None:
        with self._changed:
            self.received += 1
            if batch.done:
                self._finished.add(batch.id)
            self._changed.notify_all()

    def wait(
        self, batch_id: str, *, timeout: float, progress: Callable[[Batch], None] | None
    ) -> Batch:
        deadline = time.monotonic() + timeout
        while True:
            batch = self.client.get(batch_id)
            if progress is not None:
                progress(batch)
            if batch.done:
                return batch
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(batch, timeout)
            with self._changed:
                self._changed.wait_for(
                    lambda: batch_id in self._finished, min(remaining, self.fallback_poll)
                )

    def _stop_server(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def close(self) -> None:
        try:
            self.client.delete_webhook(self.webhook_id)
        except ConveyorApiError as exc:
            if exc.status != 404:
                raise
        finally:
            self._stop_server()
