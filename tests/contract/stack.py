"""One deployment of Conveyor inside the test process: database, broker, blobs, limiter.

A `Stack` is what the contract tests talk to. The API side is one or more `create_app`
instances whose dispatcher sends real broker messages; the worker side is a `dramatiq.Worker`
consuming them (threads in this process). The two share nothing but the database, the broker
server and the blob store, as separate processes would.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import httpx2
from dramatiq import Broker, Middleware
from dramatiq.middleware import SkipMessage
from starlette.applications import Starlette
from starlette.testclient import TestClient

from conveyor.composition import Services, open_services
from conveyor.http.app import create_app
from conveyor.runtime.actors import Dispatcher
from conveyor.runtime.broker import QUEUE, WEBHOOK_QUEUE
from conveyor.runtime.distributed import broker_dispatcher
from conveyor.runtime.embedded import EmbeddedRuntime, embedded_runtime
from conveyor.runtime.scheduler import Scheduler
from conveyor.settings import Settings
from tests.conftest import new_account_key
from tests.shape_check import install_shape_check_from_env

JOIN_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class StackSpec:
    name: str
    database: str  # "sqlite" | "postgres"
    broker: str  # "stub" | "redis" | "rabbitmq"
    blobs: str  # "local" | "s3" | "folder"

    @property
    def shared_limiter(self) -> bool:
        """Whether API processes share one connection count (else: one process, one app)."""
        return self.broker != "stub"


SPECS = [
    StackSpec("sqlite-stub-local", "sqlite", "stub", "local"),
    StackSpec("postgres-redis-s3", "postgres", "redis", "s3"),
    StackSpec("postgres-rabbitmq-folder", "postgres", "rabbitmq", "folder"),
]


class Tally(Middleware):
    """Messages sent and not yet acknowledged, counted on the one broker object both sides use.

    Counted before the enqueue, so an acknowledgement can never run ahead of its own count.
    """

    def __init__(self) -> None:
        self.outstanding = 0
        self._changed = threading.Condition()

    def before_enqueue(self, broker: Broker, message: Any, delay: int | None) -> None:
        with self._changed:
            self.outstanding += 1

    def _done(self, broker: Broker, message: Any) -> None:
        with self._changed:
            self.outstanding -= 1
            self._changed.notify_all()

    after_ack = _done
    after_nack = _done

    def wait_idle(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.outstanding <= 0, timeout)


class Drop(Middleware):
    """Loses messages of one actor: consumed and acknowledged without running, as if the
    broker or a process had dropped them. The first `spare` messages still run."""

    def __init__(self, step: str, spare: int = 0) -> None:
        self.actor_name = f"conveyor.batch.{step}"
        self.spare = spare
        self.dropped = 0
        self.active = True
        self._lock = threading.Lock()

    def before_process_message(self, broker: Broker, message: Any) -> None:
        if message.actor_name != self.actor_name:
            return
        with self._lock:
            if not self.active:
                return
            if self.spare > 0:
                self.spare -= 1
                return
            self.dropped += 1
        raise SkipMessage("dropped by the test")


class Hold(Middleware):
    """Holds every message of one actor after the first `spare`, until released."""

    def __init__(self, step: str, spare: int) -> None:
        self.actor_name = f"conveyor.batch.{step}"
        self.spare = spare
        self.reached = threading.Event()
        self.released = threading.Event()
        self._lock = threading.Lock()

    def before_process_message(self, broker: Broker, message: Any) -> None:
        if message.actor_name != self.actor_name:
            return
        with self._lock:
            if self.spare > 0:
                self.spare -= 1
                return
        self.reached.set()
        self.released.wait(timeout=30)


@dataclass
class User:
    account_id: str
    key: str
    client: TestClient


@dataclass
class Stack:
    spec: StackSpec
    settings: Settings
    services: Services
    broker: Broker
    dispatcher: Dispatcher
    workers: list[dramatiq.Worker]
    tally: Tally
    runtime: EmbeddedRuntime | None = None
    # Other "processes": services opened separately over the same shared setup.
    _others: list[Services] = field(default_factory=list)
    _list_blobs: Callable[[], list[str]] | None = None

    # --- building ------------------------------------------------------------------------

    @classmethod
    def start(
        cls, spec: StackSpec, settings: Settings, list_blobs: Callable[[], list[str]]
    ) -> Stack:
        services = open_services(settings)
        tally = Tally()
        if spec.broker == "stub":
            # The one-process default, exactly as `conveyor serve` wires it.
            runtime = embedded_runtime(services)
            runtime.add_middleware(tally)
            runtime.start()
            workers = [runtime.worker, runtime.webhook_worker]
            return cls(spec, settings, services, runtime.broker, runtime.dispatcher, workers,
                       tally, runtime, _list_blobs=list_blobs)  # fmt: skip
        # Scaled out: the API's dispatcher as `conveyor api` builds it, and a Dramatiq worker
        # on that broker consuming both queues as `conveyor worker --queues all` does.
        broker, dispatcher = broker_dispatcher(services)
        # Whatever an earlier run left on these queues is not this test's work.
        broker.flush_all()
        broker.add_middleware(tally)
        worker = dramatiq.Worker(
            broker,
            queues={QUEUE, WEBHOOK_QUEUE},
            worker_threads=settings.batches.worker_threads,
            worker_timeout=100,
        )
        worker.start()
        return cls(
            spec, settings, services, broker, dispatcher, [worker], tally, _list_blobs=list_blobs
        )

    def add_middleware(self, middleware: Middleware) -> None:
        """On every broker of the stack (the one-process runtime has one per worker)."""
        if self.runtime is not None:
            self.runtime.add_middleware(middleware)
        else:
            self.broker.add_middleware(middleware)

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
        else:
            for worker in self.workers:
                worker.stop(timeout=10_000)
            self.broker.close()
        for other in self._others:
            other.close()
        self.services.close()

    # --- the API side --------------------------------------------------------------------

    def other_process(self) -> Services:
        """Services as another API process on the same shared setup opens them."""
        services = open_services(self.settings, migrate=False)
        self._others.append(services)
        return services

    def app(
        self, *, max_connections: int | None = None, services: Services | None = None
    ) -> Starlette:
        """An API app sending work over this stack's broker."""
        services = services or self.services
        if max_connections is not None:
            limits = services.settings.limits.model_copy(
                update={"max_concurrent_requests": max_connections}
            )
            services = services.with_settings(
                services.settings.model_copy(update={"limits": limits})
            )
        return create_app(services, self.dispatcher.send)

    def api_instances(self, count: int, *, max_connections: int | None = None) -> list[Starlette]:
        """The apps of `count` API processes: each with its own database pool and limiter when
        scaled out. The one-process default has a single app by construction: it is that app
        `count` times."""
        if not self.spec.shared_limiter:
            return [self.app(max_connections=max_connections)] * count
        return [
            self.app(max_connections=max_connections, services=self.other_process())
            for _ in range(count)
        ]

    def new_key(self) -> tuple[str, str]:
        return new_account_key(self.services)

    @contextmanager
    def user(self, app: Starlette | None = None) -> Iterator[User]:
        account_id, key = self.new_key()
        with TestClient(app or self.app(), base_url="http://testserver") as client:
            install_shape_check_from_env(client)
            client.auth = httpx2.BasicAuth("anyone", key)
            yield User(account_id, key, client)

    # --- the worker side -----------------------------------------------------------------

    def join(self, timeout_ms: int = JOIN_TIMEOUT_MS) -> None:
        """Wait until every message sent, and every message it caused, is processed."""
        if self.runtime is not None:
            self.runtime.join(timeout_ms)
        else:
            join_options: dict[str, Any] = {"timeout": timeout_ms}
            if self.spec.broker == "rabbitmq":
                # RabbitMQ's join only sees ready messages and polls until several checks
                # in a row find none; the tally below covers what it cannot see.
                join_options |= {"min_successes": 2, "idle_time": 50}
            for queue in (QUEUE, WEBHOOK_QUEUE):
                self.broker.join(queue, **join_options)
                for worker in self.workers:
                    worker.join()
        assert self.tally.wait_idle(timeout_ms / 1000), (
            f"{self.tally.outstanding} message(s) still unprocessed"
        )
        for worker in self.workers:
            worker.join()

    def scheduler(self) -> Scheduler:
        batches = self.settings.batches
        return Scheduler(
            self.services.engine,
            self.services.webhooks,
            self.dispatcher,
            interval_seconds=batches.sweep_interval_seconds,
            idle_seconds=batches.sweep_idle_seconds,
        )

    # --- the blob store, seen from outside the application ------------------------------

    def stored_blobs(self) -> list[str]:
        """Keys present in the configured store, read without going through Conveyor."""
        assert self._list_blobs is not None
        return sorted(self._list_blobs())


def local_lister(root: Path) -> Callable[[], list[str]]:
    def listing() -> list[str]:
        if not root.exists():
            return []
        return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]

    return listing


def s3_lister(endpoint: str, bucket: str, prefix: str) -> Callable[[], list[str]]:
    def listing() -> list[str]:
        response = httpx2.get(
            f"{endpoint}/{bucket}", params={"list-type": "2", "prefix": prefix + "/"}
        )
        response.raise_for_status()
        ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
        keys = [node.text or "" for node in ET.fromstring(response.text).iterfind(".//s3:Key", ns)]
        return [key.removeprefix(prefix + "/") for key in keys]

    return listing
