"""The one-process runtime: Dramatiq's in-process broker and worker, plus the scheduler."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dramatiq
from dramatiq import Broker
from dramatiq.middleware import Middleware

from conveyor.runtime.actors import Dispatcher, declare_actors
from conveyor.runtime.broker import QUEUE, WEBHOOK_QUEUE, create_broker
from conveyor.runtime.group_helpers import GroupHelpers, group_helpers_for
from conveyor.runtime.parts import RuntimeParts
from conveyor.runtime.scheduler import Scheduler

log = logging.getLogger("conveyor.runtime")


@dataclass
class EmbeddedRuntime:
    services: RuntimeParts
    # Batch work and webhook deliveries each on a broker and a worker of their own: separate
    # threads, so a slow receiver never holds up batch work (Dramatiq's Worker installs its
    # own middleware on its broker, so two workers on one broker were one too many).
    broker: Broker
    webhook_broker: Broker
    dispatcher: Dispatcher
    worker: dramatiq.Worker
    webhook_worker: dramatiq.Worker
    scheduler: Scheduler
    # Processes that answer groups beside the writer (SQLite; docs/architecture.md
    # decision 21), started with the runtime.
    helpers: GroupHelpers | None = None

    def start(self) -> None:
        engine = self.services.engine
        # Nothing else runs against this database: whatever was in flight died with the
        # previous process, so resume it at once instead of waiting for leases to expire.
        discarded = engine.discard_all_ingests()
        released = engine.release_leases()
        orphaned = engine.finish_cleanups(idle_seconds=0)
        if discarded or released or orphaned:
            log.info(
                "recovered after restart: %d partial upload(s) discarded, %d chunk(s) resumed, "
                "rows of %d deleted or finished batch(es) dropped",
                discarded,
                released,
                orphaned,
            )
        if self.helpers is not None:
            # In the background: the server answers at once, and the helpers are ready for
            # the first large batch a second or so later.
            self.helpers.warm_up()
        self.worker.start()
        self.webhook_worker.start()
        self.scheduler.tick(idle_seconds=0)
        self.scheduler.start()

    def join(self, timeout_ms: int | None = None) -> None:
        """Wait until every queued message, and every message they caused, is processed."""
        # Batch work can cause deliveries and a delivery causes no batch work: join in order.
        self.broker.join(QUEUE, timeout=timeout_ms)
        self.worker.join()
        self.webhook_broker.join(WEBHOOK_QUEUE, timeout=timeout_ms)
        self.webhook_worker.join()

    def check(self) -> None:
        """Readiness: raise when a worker's threads have died."""
        for worker in (self.worker, self.webhook_worker):
            if not worker.workers or not all(thread.is_alive() for thread in worker.workers):
                raise RuntimeError("a worker of the in-process runtime is not running")

    def add_middleware(self, middleware: Middleware) -> None:
        """On both brokers: for what observes every message (tests, metrics)."""
        self.broker.add_middleware(middleware)
        self.webhook_broker.add_middleware(middleware)

    def stop(self) -> None:
        self.scheduler.stop()
        self.worker.stop()
        self.webhook_worker.stop()
        self.broker.close()
        self.webhook_broker.close()
        if self.helpers is not None:
            self.helpers.close()


def embedded_runtime(services: RuntimeParts) -> EmbeddedRuntime:
    settings = services.settings.batches
    helpers = group_helpers_for(services)
    services.engine.preparer = helpers
    broker, webhook_broker = create_broker(None), create_broker(None)
    dispatcher = declare_actors(
        broker, services.engine, services.webhooks, webhook_broker=webhook_broker
    )
    worker = dramatiq.Worker(
        broker, queues={QUEUE}, worker_threads=settings.worker_threads, worker_timeout=100
    )
    webhook_worker = dramatiq.Worker(
        webhook_broker,
        queues={WEBHOOK_QUEUE},
        worker_threads=settings.webhook_threads,
        worker_timeout=100,
    )
    scheduler = Scheduler(
        services.engine,
        services.webhooks,
        dispatcher,
        interval_seconds=settings.sweep_interval_seconds,
        idle_seconds=settings.sweep_idle_seconds,
    )
    return EmbeddedRuntime(
        services, broker, webhook_broker, dispatcher, worker, webhook_worker, scheduler, helpers
    )
