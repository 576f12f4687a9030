"""Seeing into a batch while it runs: the operations view and the results as NDJSON.

Both read the result rows each group commits (they stay until the batch is deleted or
purged), so a client sees results seconds after they happen instead of after the archive.
The operations view is a Mailchimp-shaped collection; NDJSON is one line per result record,
streamed in pages with flat memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection

from conveyor.domain import problems
from conveyor.domain.accounts import Account
from conveyor.domain.operation_view import (
    OperationStatus,
    SeqRange,
    not_run,
    slice_ranges,
    status_of,
)
from conveyor.domain.problems import FieldError, Problem
from conveyor.marketing.common import link, paging
from conveyor.storage.batch_results import RESULT_PAGE, BatchResultStore, OperationRow
from conveyor.storage.batches import BatchRow, BatchStore
from conveyor.storage.database import Database

STATUSES = ", ".join(status.value for status in OperationStatus)


@dataclass(frozen=True, slots=True)
class OperationsQuery:
    count: int
    offset: int
    status: OperationStatus | None
    operation_id: str | None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> OperationsQuery:
        """The view's parameters; a bad one raises an Invalid Resource problem."""
        count, offset = paging(query)
        return cls(count, offset, parse_status(query.get("status")), query.get("operation_id"))


def results_dropped(batch_id: str) -> Problem:
    return Problem(
        404,
        "Resource Not Found",
        f"Batch {batch_id} finished before per-operation results were kept; "
        "its archive (response_body_url) holds every result.",
    )


def parse_status(
    raw: str | None, *, allowed: frozenset[OperationStatus] | None = None
) -> OperationStatus | None:
    if raw is None or raw == "":
        return None
    choices = allowed if allowed is not None else frozenset(OperationStatus)
    try:
        status = OperationStatus(raw)
    except ValueError:
        status = None
    if status is None or status not in choices:
        names = ", ".join(sorted(choice.value for choice in choices))
        raise problems.invalid_resource(
            [FieldError("status", f"This value should be one of: {names}.")]
        )
    return status


@dataclass
class BatchResultsView:
    database: Database
    store: BatchStore
    results: BatchResultStore

    def _own(self, conn: Connection, account: Account, batch_id: str) -> BatchRow:
        batch = self.store.get(conn, batch_id, account.pk)
        if batch is None:
            raise problems.not_found()
        if not batch.rows_kept:
            raise results_dropped(batch.id)
        return batch

    # --- the operations view -------------------------------------------------------------

    def operations(
        self, account: Account, batch_id: str, query: OperationsQuery, api_root: str
    ) -> dict[str, Any]:
        """A page of the batch's operations in Mailchimp's collection shape: one item per
        result record, and one per operation not yet run."""
        # One snapshot: the counters that give `total_items` and the rows of the page agree
        # while groups keep committing.
        with self.database.snapshot() as conn:
            batch = self._own(conn, account, batch_id)
            rows, total = self._page(conn, batch, query)
        href = f"{api_root}/batches/{batch.id}"
        return {
            "batch_id": batch.id,
            "operations": [_item(row) for row in rows],
            "total_items": total,
            "_links": [
                link("self", f"{href}/operations"),
                link("parent", href),
            ],
        }

    def _page(
        self, conn: Connection, batch: BatchRow, query: OperationsQuery
    ) -> tuple[list[OperationRow], int]:
        results, status = self.results, query.status
        count, offset = query.count, query.offset
        if query.operation_id is not None:
            total = results.count_items(
                conn, batch.id, status=status, operation_id=query.operation_id
            )
            if offset >= total or count == 0:
                return [], total
            page = results.items_page(
                conn, batch.id, count, offset, status=status, operation_id=query.operation_id
            )
            return page, total
        if status in (OperationStatus.SUCCEEDED, OperationStatus.FAILED):
            failed = status is OperationStatus.FAILED
            errored = batch.errored_operations
            total = errored if failed else batch.finished_operations - errored
            if offset >= total or count == 0:
                return [], total
            return results.results_page(conn, batch.id, failed, count, offset), total
        operation_count = results.operation_count(conn, batch.id)
        if status is OperationStatus.PENDING:
            ranges = not_run(results.chunk_cursors(conn, batch.id), operation_count)
            total = sum(len(seq_range) for seq_range in ranges)
            wanted = slice_ranges(ranges, offset, count)
            return results.items_in_ranges(conn, batch.id, wanted), total
        total = batch.total_operations
        if offset >= total or count == 0:
            return [], total
        if total == operation_count:
            # No GET has paged a collection (yet): item n is operation n, a seek away.
            wanted = [SeqRange(offset, min(offset + count, operation_count))]
            return results.items_in_ranges(conn, batch.id, wanted), total
        return results.items_page(conn, batch.id, count, offset), total

    # --- results as NDJSON ---------------------------------------------------------------

    def check_results(self, account: Account, batch_id: str) -> BatchRow:
        """The batch whose results are about to be streamed, or the problem to answer."""
        with self.database.read() as conn:
            return self._own(conn, account, batch_id)

    def ndjson_pages(self, batch_id: str, status: OperationStatus | None = None) -> Iterator[bytes]:
        """The batch's result records, one JSON line each, in seq order, a page at a time.

        A page is read in a transaction of its own after the previous one was taken (a slow
        reader holds no transaction open: no SQLite WAL, no PostgreSQL snapshot), so a
        running batch's stream holds every result committed before it began, and those
        committed since whose place comes after the page being read.
        """
        after: tuple[int, int] | None = None
        while True:
            with self.database.read() as conn:
                rows = self.results.results_after(conn, batch_id, after, status=status)
            if not rows:
                return
            yield b"".join(
                orjson.dumps(
                    {
                        "operation_id": row.operation_id,
                        "status_code": row.status_code,
                        # Stored as the JSON text the executor wrote: spliced in as it is.
                        "response": orjson.Fragment(row.response or "null"),
                    },
                    option=orjson.OPT_APPEND_NEWLINE,
                )
                for row in rows
            )
            if len(rows) < RESULT_PAGE:
                return
            after = (rows[-1].seq, rows[-1].page)


def _item(row: OperationRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "page": row.page,
        "operation_id": row.operation_id,
        "method": row.method,
        "path": row.path,
        "status": status_of(row.status_code).value,
        "status_code": row.status_code,
        "response": orjson.loads(row.response) if row.response else None,
    }
