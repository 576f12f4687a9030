"""Reading a batch's operations and results while it runs and after: pages, streams, failures.

Result rows stay until the batch is deleted or purged, so everything here works on a running
batch (the groups committed so far) and on a finished one alike. Every query is served by an
index: the primary keys (batch, seq[, page]), the partial index of failed results and the
index of operation ids; none reads a batch's rows beyond the page it answers.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    String,
    and_,
    between,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
)

from conveyor.domain.operation_view import ChunkCursor, OperationStatus, SeqRange
from conveyor.domain.stored_response import expand
from conveyor.storage.batches import StoredOperation
from conveyor.storage.raw_sql import RawStatement
from conveyor.storage.tables import (
    OPERATION_ID_PREFIX,
    RESULT_FAILED,
    batch_chunks,
    batch_operations,
    batch_results,
)

_ops, _results = batch_operations, batch_results
# Written with literals for the same reason as RESULT_FAILED (tables.py).
_RESULT_SUCCEEDED = between(_results.c.status_code, literal_column("200"), literal_column("299"))


@dataclass(frozen=True, slots=True)
class OperationRow:
    """One item of the operations view: a result, or an operation that has not run (no
    status code, no response)."""

    seq: int
    page: int
    operation_id: str | None
    method: str
    path: str
    status_code: int | None
    response: str | None


@dataclass(frozen=True, slots=True)
class ResultRow:
    seq: int
    page: int
    status_code: int
    operation_id: str | None
    response: str


def _operation_row(row: Sequence[Any]) -> OperationRow:
    seq, page, operation_id, method, path, status_code, response = row
    # Member answers are stored without their links (domain/stored_response.py).
    stored = None if response is None else expand(response)
    return OperationRow(seq, page, operation_id, method, path, status_code, stored)


def _result_row(row: Sequence[Any]) -> ResultRow:
    seq, page, status_code, operation_id, response = row
    # Member answers are stored without their links (domain/stored_response.py).
    return ResultRow(seq, page, status_code, operation_id, expand(response))


_ITEM_COLUMNS = (
    _ops.c.seq,
    func.coalesce(_results.c.page, 0),
    _ops.c.operation_id,
    _ops.c.method,
    _ops.c.path,
    _results.c.status_code,
    _results.c.response,
)


def _with_results(condition: ColumnElement[bool]) -> Select[Any]:
    joined = _ops.outerjoin(
        _results, and_(_results.c.batch_id == _ops.c.batch_id, _results.c.seq == _ops.c.seq)
    )
    return (
        select(*_ITEM_COLUMNS)
        .select_from(joined)
        .where(condition)
        .order_by(_ops.c.seq, _results.c.page)
    )


def _results_with_operations(condition: ColumnElement[bool]) -> Select[Any]:
    """Result rows matching `condition` with their operations' method and path, in order."""
    joined = _results.join(
        _ops, and_(_ops.c.batch_id == _results.c.batch_id, _ops.c.seq == _results.c.seq)
    )
    return (
        select(
            _results.c.seq,
            _results.c.page,
            _ops.c.operation_id,
            _ops.c.method,
            _ops.c.path,
            _results.c.status_code,
            _results.c.response,
        )
        .select_from(joined)
        .where(condition)
        .order_by(_results.c.seq, _results.c.page)
    )


def _status_condition(status: OperationStatus | None) -> ColumnElement[bool]:
    if status is OperationStatus.PENDING:
        return _results.c.seq.is_(None)
    if status is OperationStatus.SUCCEEDED:
        return _RESULT_SUCCEEDED
    if status is OperationStatus.FAILED:
        return RESULT_FAILED
    return true()


def _operation_id_is(operation_id: str) -> ColumnElement[bool]:
    """The exact id, by way of the index on its prefix (tables.py). The exact comparison is
    on `operation_id || ''`: on the bare column, SQLite walked the batch by its primary key
    instead of seeking the prefix."""
    prefix = func.substr(literal(operation_id), literal_column("1"), literal_column("200"))
    exact = _ops.c.operation_id.op("||")(literal_column("''")) == operation_id
    return and_(prefix == OPERATION_ID_PREFIX, exact)


def _failed(status_codes: Collection[int] | None) -> ColumnElement[bool]:
    if status_codes:
        return and_(RESULT_FAILED, _results.c.status_code.in_(sorted(status_codes)))
    return RESULT_FAILED


# Result rows per keyset page of a stream.
RESULT_PAGE = 2_000


def _results_after(status: OperationStatus | None) -> RawStatement:
    after = or_(
        _results.c.seq > bindparam("seq"),
        and_(_results.c.seq == bindparam("seq"), _results.c.page > bindparam("page")),
    )
    return RawStatement(
        select(
            _results.c.seq,
            _results.c.page,
            _results.c.status_code,
            _results.c.operation_id,
            _results.c.response,
        )
        .where(
            and_(
                _results.c.batch_id == bindparam("batch_id"),
                _results.c.seq >= bindparam("seq"),
                after,
                _status_condition(status),
            )
        )
        .order_by(_results.c.seq, _results.c.page)
        .limit(literal_column(str(RESULT_PAGE)))
        # Literal: SQLite renders an OFFSET parameter beside any LIMIT, and a RawStatement
        # passes only the parameters it is given.
        .offset(literal_column("0"))
    )


# NDJSON moves a million of these rows: on the DBAPI cursor (storage/raw_sql.py).
_RESULTS_AFTER = {
    status: _results_after(status)
    for status in (None, OperationStatus.SUCCEEDED, OperationStatus.FAILED)
}


class BatchResultStore:
    """The read side of a batch's rows (no clock: nothing here depends on time)."""

    # --- what has run, and what has not --------------------------------------------------

    def operation_count(self, conn: Connection, batch_id: str) -> int:
        """How many operations the batch was submitted with (the last seq, by index)."""
        last = conn.execute(select(func.max(_ops.c.seq)).where(_ops.c.batch_id == batch_id))
        value = last.scalar()
        return 0 if value is None else int(value) + 1

    def chunk_cursors(self, conn: Connection, batch_id: str) -> list[ChunkCursor]:
        rows = conn.execute(
            select(batch_chunks.c.next_seq, batch_chunks.c.stop_seq).where(
                batch_chunks.c.batch_id == batch_id
            )
        ).all()
        return [ChunkCursor(row.next_seq, row.stop_seq) for row in rows]

    # --- the operations view -------------------------------------------------------------

    def items_in_ranges(
        self, conn: Connection, batch_id: str, ranges: Sequence[SeqRange]
    ) -> list[OperationRow]:
        """Every item of the operations in `ranges`, in order: a seek per range."""
        items: list[OperationRow] = []
        for seq_range in ranges:
            # One query per range: under an OR of ranges SQLite read the whole batch.
            within = and_(
                _ops.c.batch_id == batch_id,
                _ops.c.seq >= seq_range.start,
                _ops.c.seq < seq_range.stop,
            )
            items.extend(_operation_row(row) for row in conn.execute(_with_results(within)).all())
        return items

    def items_page(
        self,
        conn: Connection,
        batch_id: str,
        count: int,
        offset: int,
        *,
        status: OperationStatus | None = None,
        operation_id: str | None = None,
    ) -> list[OperationRow]:
        """A page of the items that match, by position: for the views whose positions do not
        map onto seq (an `operation_id=`, or a batch with paged GETs)."""
        condition = and_(_ops.c.batch_id == batch_id, _status_condition(status))
        query = _with_results(condition)
        if operation_id is not None:
            # Sorted by `seq + 0`, an expression: ordered by the column, SQLite (without
            # statistics) walked the whole batch by its primary key for that order instead of
            # seeking the few matches by the operation-id index and sorting them.
            query = (
                query.where(_operation_id_is(operation_id))
                .order_by(None)
                .order_by(_ops.c.seq + literal_column("0"), _results.c.page)
            )
        query = query.limit(count).offset(offset)
        return [_operation_row(row) for row in conn.execute(query).all()]

    def count_items(
        self,
        conn: Connection,
        batch_id: str,
        *,
        status: OperationStatus | None,
        operation_id: str,
    ) -> int:
        condition = and_(
            _ops.c.batch_id == batch_id,
            _operation_id_is(operation_id),
            _status_condition(status),
        )
        matching = _with_results(condition).order_by(None).subquery()
        return int(conn.execute(select(func.count()).select_from(matching)).scalar_one())

    def results_page(
        self, conn: Connection, batch_id: str, failed: bool, count: int, offset: int
    ) -> list[OperationRow]:
        """A page of the succeeded or the failed results, with their operations."""
        condition = and_(
            _results.c.batch_id == batch_id, RESULT_FAILED if failed else _RESULT_SUCCEEDED
        )
        # The positions first, from the index alone (for failures: the partial index covers
        # them), so that an offset skips index entries, not joined rows; then the page.
        positions = conn.execute(
            select(_results.c.seq, _results.c.page)
            .where(condition)
            .order_by(_results.c.seq, _results.c.page)
            .limit(count)
            .offset(offset)
        ).all()
        if not positions:
            return []
        wanted = {(row.seq, row.page) for row in positions}
        rows = conn.execute(
            _results_with_operations(
                and_(
                    condition,
                    _results.c.seq >= positions[0].seq,
                    _results.c.seq <= positions[-1].seq,
                )
            )
        ).all()
        return [_operation_row(row) for row in rows if (row.seq, row.page) in wanted]

    def failures_matching(
        self, conn: Connection, batch_id: str, text: str, count: int, offset: int
    ) -> tuple[list[OperationRow], int]:
        """A page of the failed results whose operation id, status code or answer (its
        title, its detail) holds `text`, and how many there are. Failures are few (the
        partial index finds them), so the text is matched on those rows alone."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        matches = or_(
            _results.c.operation_id.ilike(pattern, escape="\\"),
            _results.c.response.ilike(pattern, escape="\\"),
            cast(_results.c.status_code, String) == text,
        )
        condition = and_(_results.c.batch_id == batch_id, RESULT_FAILED, matches)
        total = conn.execute(select(func.count()).select_from(_results).where(condition))
        rows = conn.execute(_results_with_operations(condition).limit(count).offset(offset)).all()
        return [_operation_row(row) for row in rows], int(total.scalar_one())

    # --- result streams ------------------------------------------------------------------

    def results_after(
        self,
        conn: Connection,
        batch_id: str,
        after: tuple[int, int] | None,
        *,
        status: OperationStatus | None = None,
    ) -> list[ResultRow]:
        """The next `RESULT_PAGE` results after position (seq, page), in order: a keyset
        page, so a stream of a million costs the same per page at its end as at its start."""
        seq, page = after if after is not None else (-1, 0)
        rows = _RESULTS_AFTER[status].all(conn, {"batch_id": batch_id, "seq": seq, "page": page})
        return [_result_row(row) for row in rows]

    # --- failures, for a retry -----------------------------------------------------------

    def has_failures(
        self, conn: Connection, batch_id: str, status_codes: Collection[int] | None
    ) -> bool:
        found = conn.execute(
            select(_results.c.seq)
            .where(and_(_results.c.batch_id == batch_id, _failed(status_codes)))
            .limit(1)
        ).first()
        return found is not None

    def failed_operations(
        self,
        conn: Connection,
        batch_id: str,
        after_seq: int,
        limit: int,
        status_codes: Collection[int] | None,
    ) -> list[StoredOperation]:
        """The next `limit` operations after `after_seq` with a failed result (one each, if a
        paged GET failed on several pages), in order."""
        seqs = list(
            conn.execute(
                select(_results.c.seq)
                .where(
                    and_(
                        _results.c.batch_id == batch_id,
                        _results.c.seq > after_seq,
                        _failed(status_codes),
                    )
                )
                .distinct()
                .order_by(_results.c.seq)
                .limit(limit)
            ).scalars()
        )
        if not seqs:
            return []
        # Two seeks rather than a join: joined, SQLite walked every operation of the batch.
        rows = conn.execute(
            select(
                _ops.c.seq,
                _ops.c.method,
                _ops.c.path,
                _ops.c.params,
                _ops.c.body,
                _ops.c.operation_id,
            )
            .where(and_(_ops.c.batch_id == batch_id, _ops.c.seq.in_(seqs)))
            .order_by(_ops.c.seq)
        ).all()
        return [StoredOperation(*row) for row in rows]
