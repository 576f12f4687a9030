"""How many batches are in each status, across accounts: the `conveyor_batches` gauge."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from conveyor.domain.states import HIDDEN_BATCH_STATES, BatchStatus
from conveyor.storage.tables import batches

VISIBLE_STATUSES = tuple(status for status in BatchStatus if status.is_visible)


class BatchCounts:
    """Counts read at scrape time from the status index (`ix_batches_status_updated`)."""

    def by_status(self, conn: Connection) -> dict[BatchStatus, int]:
        """Every status a client can see, zero where there is none (stable series)."""
        rows = conn.execute(
            select(batches.c.status, func.count())
            .where(batches.c.status.not_in(sorted(HIDDEN_BATCH_STATES)))
            .group_by(batches.c.status)
        )
        counts = dict.fromkeys(VISIBLE_STATUSES, 0)
        for status, count in rows:
            counts[BatchStatus(status)] = int(count)
        return counts
