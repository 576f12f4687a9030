"""The engine's steps, each logged as one line and counted: a batch step with its batch
id, its duration and what its groups did; a webhook delivery with its outcome.

Subclasses, so the runtime (embedded or Dramatiq workers) runs them unchanged: the
composition root builds these in place of the plain engine and webhook service.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from conveyor.batches.engine import BatchEngine
from conveyor.batches.webhooks import WebhookService
from conveyor.domain.steps import FollowUp
from conveyor.observability.logs import StepInfo, enter_step, leave_step
from conveyor.observability.metrics import ConveyorMetrics

log = logging.getLogger("conveyor.steps")


def _logged(name: str, batch_id: str, run: Callable[[str], list[FollowUp]]) -> list[FollowUp]:
    info = StepInfo(batch_id, name)
    token = enter_step(info)
    started = time.perf_counter()
    outcome = "failed"
    follow_ups: list[FollowUp] = []
    try:
        follow_ups = run(batch_id)
        outcome = "ok"
        return follow_ups
    finally:
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info(
            "batch step %s %s: %s in %.1f ms, %d operations succeeded, %d failed, next: %s",
            name, batch_id, outcome, elapsed_ms, info.succeeded, info.failed,
            ",".join(sorted({f.step.value for f in follow_ups})) or "-",
            extra={
                "outcome": outcome,
                "duration_ms": round(elapsed_ms, 2),
                "succeeded": info.succeeded,
                "failed": info.failed,
            },
        )  # fmt: skip
        leave_step(token)


@dataclass
class ObservedBatchEngine(BatchEngine):
    def preprocess(self, batch_id: str) -> list[FollowUp]:
        return _logged("preprocess", batch_id, super().preprocess)

    def work(self, batch_id: str) -> list[FollowUp]:
        return _logged("work", batch_id, super().work)

    def finalize(self, batch_id: str) -> list[FollowUp]:
        return _logged("finalize", batch_id, super().finalize)

    def cleanup(self, batch_id: str) -> list[FollowUp]:
        return _logged("cleanup", batch_id, super().cleanup)


@dataclass
class ObservedWebhookService(WebhookService):
    metrics: ConveyorMetrics | None = None

    def deliver(self, delivery_id: str) -> list[FollowUp]:
        started = time.perf_counter()
        report = self.run_delivery(delivery_id)
        if self.metrics is not None:
            self.metrics.count_delivery(report.outcome.value)
        attempt = report.attempt
        log.info(
            "webhook delivery %s: %s in %.1f ms%s",
            delivery_id, report.outcome.value, (time.perf_counter() - started) * 1000,
            f" (answer {attempt.status_code or attempt.error})" if attempt else "",
            extra={"delivery_id": delivery_id, "outcome": report.outcome.value},
        )  # fmt: skip
        return report.follow_ups
