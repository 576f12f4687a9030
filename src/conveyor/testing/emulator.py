"""An emulate-mode Conveyor in this process (uvicorn in a thread), and the handle tests use.

The handle speaks to the test controls over HTTP, as any other client of `conveyor emulate`
would (docs/emulator.md): what a test sees here is what a suite in another language sees.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from conveyor.composition import Services, open_services
from conveyor.emulator.template import seed_database
from conveyor.http.app import create_app
from conveyor.http.wire import uvicorn_options
from conveyor.runtime.embedded import EmbeddedRuntime, embedded_runtime
from conveyor.settings import Settings

START_TIMEOUT_SECONDS = 30.0


class ConveyorControlError(RuntimeError):
    """A test control refused what it was asked (its problem document is the message)."""


class Conveyor:
    """What the `conveyor` fixture gives a test."""

    def __init__(self, root_url: str, api_key: str, runtime: EmbeddedRuntime) -> None:
        self.root_url = root_url
        self.api_key = api_key
        self._runtime = runtime
        self._http = httpx.Client(base_url=root_url, timeout=30.0)

    @property
    def base_url(self) -> str:
        """The API root to give a Mailchimp client: `http://127.0.0.1:PORT/3.0`."""
        return f"{self.root_url}/3.0"

    @property
    def server(self) -> str:
        """The key's datacenter (`us1`), which Mailchimp clients call the server."""
        return self.api_key.rsplit("-", 1)[1]

    # --- controls --------------------------------------------------------------------------

    def reset(self) -> None:
        """Everything gone: every account's data, the journal, faults and pace."""
        self._call("POST", "/_conveyor/reset")

    def requests(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        since: str | None = None,
        batch_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """What the server received, oldest first; `path` is a glob (`/3.0/lists/*/members`).

        Batch operations are included, with `batch_id` and `operation_id`.
        """
        filters = {"method": method, "path": path, "since": since, "batch_id": batch_id}
        given = {name: value for name, value in filters.items() if value is not None}
        return list(self._call("GET", "/_conveyor/requests", params=given)["requests"])

    def fault(
        self,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        *,
        times: int | None = None,
        probability: float = 1.0,
        delay_ms: int = 0,
        where: str = "http",
    ) -> dict[str, Any]:
        """Answer matching requests with Mailchimp's problem for `status` (or delay them);
        `where` is "http", "batch" (operations inside batches) or "both"."""
        rule: dict[str, Any] = {
            "method": method, "path": path, "status": status, "times": times,
            "probability": probability, "delay_ms": delay_ms, "in": where,
        }  # fmt: skip
        given = {name: value for name, value in rule.items() if value is not None}
        return dict(self._call("POST", "/_conveyor/faults", json=given))

    def faults(self) -> list[dict[str, Any]]:
        """The fault rules, each with how often it `fired`."""
        return list(self._call("GET", "/_conveyor/faults")["faults"])

    def advance(self, seconds: float) -> None:
        """Move virtual time forward: retention, signed URLs, webhook retries, idempotency."""
        self._call("POST", "/_conveyor/clock", json={"advance": seconds})

    def pace(self, *, batch_start_delay_ms: int = 0, operations_per_second: float = 0) -> None:
        """Make batches as slow as the real service (0 and 0: as fast as Conveyor goes)."""
        body = {
            "batch_start_delay_ms": batch_start_delay_ms,
            "operations_per_second": operations_per_second,
        }
        self._call("POST", "/_conveyor/pace", json=body)

    def load(self, fixtures: dict[str, Any]) -> dict[str, Any]:
        """Load lists with their merge fields and members (each in its POST's shape) for
        this key's account; answers the ids made. Invalid parts: nothing is loaded."""
        return dict(
            self._call("POST", "/_conveyor/fixtures", json={"api_key": self.api_key, **fixtures})
        )

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every batch and webhook delivery queued so far has run."""
        self._runtime.join(timeout_ms=int(timeout * 1000))

    # --- clients ---------------------------------------------------------------------------

    def mailchimp_client(self) -> Any:
        """An official `mailchimp_marketing.Client` configured for this server."""
        try:
            import mailchimp_marketing
        except ImportError:
            raise RuntimeError(
                "mailchimp_client() needs the official client: pip install mailchimp-marketing"
            ) from None
        client = mailchimp_marketing.Client()
        client.set_config({"api_key": self.api_key, "server": self.server})
        client.api_client.host = self.base_url
        return client

    def mailchimp3_client(self) -> Any:
        """A `mailchimp3.MailChimp` configured for this server."""
        try:
            from mailchimp3 import MailChimp
        except ImportError:
            raise RuntimeError("mailchimp3_client() needs: pip install mailchimp3") from None
        client = MailChimp(mc_api=self.api_key)
        client.base_url = self.base_url + "/"
        return client

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **options: Any) -> Any:
        response = self._http.request(method, path, **options)
        if response.status_code >= 400:
            raise ConveyorControlError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None


@dataclass
class EmulatorServer:
    """`conveyor emulate` in this process: the runtime, and uvicorn serving in a thread."""

    services: Services
    runtime: EmbeddedRuntime
    server: uvicorn.Server
    thread: threading.Thread
    listener: socket.socket
    handle: Conveyor

    @classmethod
    def start(cls, data_dir: Path, *, api_key: str | None = None) -> EmulatorServer:
        settings = Settings(data_dir=data_dir, emulate=True, log_level="warning")
        services = open_services(settings, migrate=not seed_database(data_dir))
        runtime = embedded_runtime(services)
        runtime.start()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        app = create_app(services, runtime.dispatcher.send)
        config = uvicorn.Config(app, log_level="warning", access_log=False, **uvicorn_options())
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listener]}, name="conveyor-emulator", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                listener.close()
                runtime.stop()
                services.close()
                raise RuntimeError("the Conveyor emulator did not start")
            time.sleep(0.005)
        key = api_key or f"{secrets.token_hex(16)}-us1"
        handle = Conveyor(f"http://127.0.0.1:{port}", key, runtime)
        return cls(services, runtime, server, thread, listener, handle)

    def stop(self) -> None:
        self.handle.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.listener.close()
        self.runtime.stop()
        self.services.close()
