"""The engine's work as metrics: operations counted once their group has committed."""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.batches.group_hooks import NoHooks, RanOperation
from conveyor.domain.accounts import Account
from conveyor.domain.states import is_success
from conveyor.observability.logs import current_step
from conveyor.observability.metrics import ConveyorMetrics


class MetricsHook(NoHooks):
    """A `GroupHooks` that only watches: succeeded / failed operations per committed group
    (one per operation submitted: a GET that paged a collection counts once)."""

    def __init__(self, metrics: ConveyorMetrics | None) -> None:
        self.metrics = metrics

    def after_commit(self, account: Account, batch_id: str, ran: Sequence[RanOperation]) -> None:
        failed = sum(1 for op in ran if not is_success(op.status_code))
        succeeded = len(ran) - failed
        if self.metrics is not None:
            self.metrics.count_operations(succeeded, failed)
        step = current_step()
        if step is not None:
            step.succeeded += succeeded
            step.failed += failed
