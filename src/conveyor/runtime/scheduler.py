"""Periodic work: re-send what may have been lost, purge what has expired.

Dramatiq has no scheduler; a small loop is enough. Several may run: every step it triggers is
idempotent, so a duplicate sweep costs only a few queries.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from conveyor.batches.engine import BatchEngine
from conveyor.batches.webhooks import WebhookService
from conveyor.runtime.actors import Dispatcher

log = logging.getLogger("conveyor.scheduler")


@dataclass
class Scheduler:
    engine: BatchEngine
    webhooks: WebhookService
    dispatcher: Dispatcher
    interval_seconds: float
    idle_seconds: float
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def tick(self, *, idle_seconds: float | None = None) -> None:
        idle = self.idle_seconds if idle_seconds is None else idle_seconds
        follow_ups = self.engine.sweep(idle_seconds=idle)
        follow_ups += self.webhooks.sweep(idle_seconds=idle)
        if follow_ups:
            log.info("sweep: re-sending %d message(s)", len(follow_ups))
        self.dispatcher.send(follow_ups)
        purged = self.engine.purge_expired()
        if purged:
            log.info("retention: purged %d batch(es)", purged)
        cleaned = self.engine.finish_cleanups(idle_seconds=idle)
        if cleaned:
            log.info("finished the interrupted cleanup of %d batch(es)", cleaned)

    def run_forever(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed; trying again next interval")

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="conveyor-scheduler")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
