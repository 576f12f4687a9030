"""Live progress of a batch as a stream of events, by polling its row.

The batch row is the truth and every worker moves its counters in the transactions that do
the work, so any API process can follow any batch by reading that one indexed row every
`interval_seconds`: no broker, no pub/sub, the same in the one-process server and scaled out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum

import anyio

from conveyor.domain.clock import Clock
from conveyor.domain.progress import ProgressMeter, Rate
from conveyor.domain.states import BatchStatus
from conveyor.storage.batches import BatchRow


class ProgressEventKind(StrEnum):
    PROGRESS = "progress"
    FINISHED = "finished"
    # The batch was deleted while watched: nothing more will come.
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    kind: ProgressEventKind
    batch: BatchRow | None
    rate: Rate


@dataclass
class ProgressFeed:
    """Events of one batch: `progress` when it changes (at most one per interval), then one
    `finished` (or `deleted`), and the end."""

    read: Callable[[], BatchRow | None]
    clock: Clock
    # The read is one indexed row: on SQLite in WAL mode it never waits, so it runs on the
    # event loop; other databases are read from a worker thread.
    read_in_thread: bool
    interval_seconds: float = 0.25
    window_seconds: float = 10.0

    async def events(self) -> AsyncIterator[ProgressEvent]:
        meter = ProgressMeter(self.window_seconds)
        last_seen: tuple[object, ...] | None = None
        while True:
            batch = await self._read()
            if batch is None:
                yield ProgressEvent(ProgressEventKind.DELETED, None, Rate(0.0, None))
                return
            rate = meter.observe(
                self.clock.monotonic(), batch.finished_operations, _remaining(batch)
            )
            if batch.status == BatchStatus.FINISHED:
                yield ProgressEvent(ProgressEventKind.FINISHED, batch, rate)
                return
            seen = (
                batch.status,
                batch.total_operations,
                batch.finished_operations,
                batch.errored_operations,
                batch.canceled_at,
            )
            if seen != last_seen:
                last_seen = seen
                yield ProgressEvent(ProgressEventKind.PROGRESS, batch, rate)
            await anyio.sleep(self.interval_seconds)

    async def _read(self) -> BatchRow | None:
        if self.read_in_thread:
            return await anyio.to_thread.run_sync(self.read, abandon_on_cancel=True)
        return self.read()


def _remaining(batch: BatchRow) -> int:
    """Operations still to run: none once the batch is past running or canceled."""
    if batch.canceled or batch.status in (BatchStatus.FINALIZING, BatchStatus.FINISHED):
        return 0
    return max(batch.total_operations - batch.finished_operations, 0)
