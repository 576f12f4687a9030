"""Batch SQL: batch rows, stored operations, chunks with leases, result rows.

Every method runs on the caller's connection (the caller owns the transaction: a group of
operations and its results commit together, docs/architecture.md decision 2) and reads the
time from the store's clock. Status and chunk moves are compare-and-sets checked against the
domain's move tables, so a duplicate message finds nothing to do.
"""

from __future__ import annotations

import uuid
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from conveyor.domain.accounts import Account
from conveyor.domain.archive import ResultFields
from conveyor.domain.chunking import (
    NO_MEMBER,
    ChunkRange,
    member_of,
    plan_chunks,
    plan_hashed_chunks,
)
from conveyor.domain.clock import Clock, now_iso
from conveyor.domain.ids import hex_id
from conveyor.domain.operations import Operation
from conveyor.domain.states import (
    BATCH_MOVES,
    CANCELABLE_BATCH_STATES,
    CHUNK_MOVES,
    HIDDEN_BATCH_STATES,
    IN_FLIGHT_BATCH_STATES,
    UNSTARTED_BATCH_STATES,
    BatchStatus,
    ChunkState,
    check_move,
    sources,
)
from conveyor.domain.stored_response import compact, expand
from conveyor.storage.database import Database
from conveyor.storage.raw_sql import BulkInsert, RawStatement, literal_list
from conveyor.storage.tables import (
    accounts_table,
    api_keys,
    batch_chunks,
    batch_operations,
    batch_results,
    batches,
    idempotency_keys,
)

_HIDDEN = sorted(HIDDEN_BATCH_STATES)


@dataclass(frozen=True, slots=True)
class BatchRow:
    id: str
    account_pk: int
    status: str
    total_operations: int
    finished_operations: int
    errored_operations: int
    submitted_at: str
    completed_at: str
    api_root: str
    archive_key: str | None
    canceled_at: str | None = None
    retry_of: str | None = None
    # False for a batch that finished before result rows were kept (migration 0007).
    rows_kept: bool = True

    @property
    def canceled(self) -> bool:
        return self.canceled_at is not None


class BatchNotRunning(Exception):
    """A group's results found their batch no longer `started` (canceled or deleted meanwhile):
    the caller rolls the whole group back, effects included."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"batch {batch_id} is no longer running")
        self.batch_id = batch_id


@dataclass(frozen=True, slots=True)
class Claim:
    """A chunk held by one worker until `lease_until`; the token proves who holds it."""

    batch_id: str
    seq: int
    next_seq: int
    stop_seq: int
    token: str


class StoredOperation(NamedTuple):
    """An operation as stored; a named tuple, as one is loaded for every operation run."""

    seq: int
    method: str
    path: str
    params: str | None
    body: str | None
    operation_id: str | None


@dataclass(frozen=True, slots=True)
class CleanupState:
    status: BatchStatus
    rows_pending: bool


_BATCH_COLUMNS = (
    batches.c.id,
    batches.c.account_pk,
    batches.c.status,
    batches.c.total_operations,
    batches.c.finished_operations,
    batches.c.errored_operations,
    batches.c.submitted_at,
    batches.c.completed_at,
    batches.c.api_root,
    batches.c.archive_key,
    batches.c.canceled_at,
    batches.c.retry_of,
    batches.c.rows_kept,
)

_OPERATION_COLUMNS = ("batch_id", "seq", "method", "path", "params", "body", "operation_id")
# Ingest moves millions of these rows: COPY on PostgreSQL, never Core's. On SQLite as JSON,
# so that the page being stored does not wait on the lock the parsing thread holds.
_INSERT_OPERATION = BulkInsert(batch_operations, _OPERATION_COLUMNS, json_rows=True)

# The statements of a batch's life cycle run a few dozen times per batch, each ~150-250 µs
# through Core against ~30 µs on the cursor: ~6 ms of a 1,000-add batch's ~100 ms.
_VISIBLE = batches.c.status.not_in(literal_list(_HIDDEN))
_BATCH_BY_ID = RawStatement(
    select(*_BATCH_COLUMNS).where(and_(batches.c.id == bindparam("batch_id"), _VISIBLE))
)
_OWN_BATCH = RawStatement(
    select(*_BATCH_COLUMNS).where(
        and_(
            batches.c.id == bindparam("batch_id"),
            batches.c.account_pk == bindparam("account_pk"),
            _VISIBLE,
        )
    )
)
_BATCH_STATUS = RawStatement(select(batches.c.status).where(batches.c.id == bindparam("batch_id")))
_BATCH_TOTAL = RawStatement(
    select(batches.c.status, batches.c.total_operations).where(
        batches.c.id == bindparam("batch_id")
    )
)
_TOUCH_BATCH = RawStatement(
    update(batches).where(batches.c.id == bindparam("b_id")).values(updated_ts=bindparam("b_now"))
)
_TOUCH_IN_STATUS = RawStatement(
    update(batches)
    .where(and_(batches.c.id == bindparam("b_id"), batches.c.status == bindparam("b_status")))
    .values(updated_ts=bindparam("b_now"))
)


def _unstarted_count(states: Iterable[BatchStatus]) -> RawStatement:
    return RawStatement(
        select(func.count())
        .select_from(batches)
        .where(
            and_(
                batches.c.account_pk == bindparam("account_pk"),
                batches.c.status.in_(literal_list(status.value for status in sorted(states))),
            )
        )
    )


_UNSTARTED = _unstarted_count(UNSTARTED_BATCH_STATES)
_UNSTARTED_OR_UPLOADING = _unstarted_count({*UNSTARTED_BATCH_STATES, BatchStatus.INGESTING})
_LOCK_ACCOUNT = RawStatement(
    select(accounts_table.c.id)
    .where(accounts_table.c.id == bindparam("account_pk"))
    .with_for_update()
)
_ACCOUNT = RawStatement(
    select(
        accounts_table.c.id,
        accounts_table.c.account_id,
        accounts_table.c.account_name,
        accounts_table.c.email,
        func.coalesce(
            select(api_keys.c.dc)
            .where(api_keys.c.account_pk == accounts_table.c.id)
            .limit(1)
            .scalar_subquery(),
            "us1",
        ),
        accounts_table.c.created_at,
    ).where(accounts_table.c.id == bindparam("account_pk"))
)
_BATCH_ID_TAKEN = RawStatement(select(batches.c.id).where(batches.c.id == bindparam("batch_id")))
_INSERT_BATCH = RawStatement(
    insert(batches).values(
        {
            name: bindparam(name)
            for name in (
                "id", "account_pk", "status", "total_operations", "finished_operations",
                "errored_operations", "submitted_at", "submitted_ts", "completed_at",
                "updated_ts", "api_root", "retry_of",
            )
        }
    )
)  # fmt: skip
_CHUNK_COUNT = RawStatement(
    select(func.count())
    .select_from(batch_chunks)
    .where(batch_chunks.c.batch_id == bindparam("batch_id"))
)
_CHUNK_COLUMNS = (
    "batch_id", "seq", "start_seq", "stop_seq", "next_seq", "state", "lease_until", "attempts",
)  # fmt: skip
_INSERT_CHUNKS = BulkInsert(batch_chunks, _CHUNK_COLUMNS)
_UNFINISHED_CHUNKS = RawStatement(
    select(batch_chunks.c.state, batch_chunks.c.lease_until).where(
        and_(
            batch_chunks.c.batch_id == bindparam("batch_id"),
            batch_chunks.c.state != ChunkState.DONE.value,
        )
    )
)
# A chunk a worker may take: queued, or running on a lease that ran out, of a started batch.
_CLAIMABLE = and_(
    select(batches.c.id)
    .where(
        and_(batches.c.id == bindparam("batch_id"), batches.c.status == BatchStatus.STARTED.value)
    )
    .exists(),
    batch_chunks.c.batch_id == bindparam("batch_id"),
    or_(
        batch_chunks.c.state == ChunkState.QUEUED.value,
        and_(
            batch_chunks.c.state == ChunkState.RUNNING.value,
            batch_chunks.c.lease_until < bindparam("now"),
        ),
    ),
)
_CLAIM_CANDIDATE = RawStatement(
    select(batch_chunks.c.seq, batch_chunks.c.next_seq, batch_chunks.c.stop_seq)
    .where(_CLAIMABLE)
    .order_by(batch_chunks.c.seq)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_CLAIM = RawStatement(
    update(batch_chunks)
    .where(and_(_CLAIMABLE, batch_chunks.c.seq == bindparam("seq")))
    .values(
        state=ChunkState.RUNNING.value,
        lease_token=bindparam("token"),
        lease_until=bindparam("lease_until"),
        attempts=batch_chunks.c.attempts + 1,
    )
)


@cache
def _move_statement(values: tuple[str, ...]) -> RawStatement:
    """The status compare-and-set that also sets `values` (columns, each bound as `v_<name>`)."""
    return RawStatement(
        update(batches)
        .where(and_(batches.c.id == bindparam("b_id"), batches.c.status == bindparam("b_from")))
        .values(
            status=bindparam("b_to"),
            updated_ts=bindparam("b_now"),
            **{name: bindparam(f"v_{name}") for name in values},
        )
    )


def _stored(rows: list[ResultRow]) -> list[ResultRow]:
    """Result rows as stored: member answers without their links (domain/stored_response.py)."""
    return [
        (batch_id, seq, page, status_code, operation_id, compact(response))
        for batch_id, seq, page, status_code, operation_id, response in rows
    ]


def _batch_row(row: Sequence[Any]) -> BatchRow:
    batch = BatchRow(*row)
    # `rows_kept` is a boolean column: SQLite hands it back as 0 or 1.
    if type(batch.rows_kept) is bool:
        return batch
    return replace(batch, rows_kept=bool(batch.rows_kept))


_ADVANCE_CHUNK = RawStatement(
    update(batch_chunks)
    .where(
        and_(
            batch_chunks.c.batch_id == bindparam("b_batch_id"),
            batch_chunks.c.seq == bindparam("b_seq"),
            batch_chunks.c.lease_token == bindparam("b_token"),
            batch_chunks.c.next_seq == bindparam("b_from"),
            batch_chunks.c.state == ChunkState.RUNNING.value,
        )
    )
    .values(
        next_seq=bindparam("b_to"),
        lease_until=bindparam("b_lease"),
        state=bindparam("b_state"),
    )
)

# A finalizing batch's results in submission order, for its archive.
_SELECT_RESULTS_IN_ORDER = (
    select(batch_results.c.status_code, batch_results.c.operation_id, batch_results.c.response)
    .where(batch_results.c.batch_id == bindparam("batch_id"))
    .order_by(batch_results.c.seq, batch_results.c.page)
)
_RESULTS_IN_ORDER = RawStatement(_SELECT_RESULTS_IN_ORDER)

_LOAD_OPERATIONS = RawStatement(
    select(
        batch_operations.c.seq,
        batch_operations.c.method,
        batch_operations.c.path,
        batch_operations.c.params,
        batch_operations.c.body,
        batch_operations.c.operation_id,
    )
    .where(
        and_(
            batch_operations.c.batch_id == bindparam("batch_id"),
            batch_operations.c.seq >= bindparam("start"),
            batch_operations.c.seq < bindparam("stop"),
        )
    )
    .order_by(batch_operations.c.seq)
)

# What planning needs of each operation: the body only where it may name the member.
_PLAN_COLUMNS = (
    select(
        batch_operations.c.method,
        batch_operations.c.path,
        case((batch_operations.c.method == "POST", batch_operations.c.body), else_=None),
    )
    .where(batch_operations.c.batch_id == bindparam("batch_id"))
    .order_by(batch_operations.c.seq)
)

_RESULT_COLUMNS = ("batch_id", "seq", "page", "status_code", "operation_id", "response")
# A result row in `_RESULT_COLUMNS` order: one is made for every operation run.
ResultRow = tuple[str, int, int, int, str | None, str]
_INSERT_RESULT = BulkInsert(batch_results, _RESULT_COLUMNS)
# A compare-and-set on the status: a cancel (or a delete) that committed first makes this touch
# no row, and the group rolls back whole. On PostgreSQL the row lock orders the two: a cancel
# waits for a group that got here first, so a group commits entirely before it or not at all.
_COUNT_RESULTS = RawStatement(
    update(batches)
    .where(
        and_(
            batches.c.id == bindparam("b_id"),
            batches.c.status == BatchStatus.STARTED.value,
        )
    )
    .values(
        finished_operations=batches.c.finished_operations + bindparam("b_finished"),
        errored_operations=batches.c.errored_operations + bindparam("b_errored"),
        total_operations=batches.c.total_operations + bindparam("b_extra"),
        updated_ts=bindparam("b_now"),
    )
)


class BatchStore:
    """All SQL of batches, on the caller's connection, with time from `clock`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    # --- ingest ------------------------------------------------------------------------

    def create_ingesting(
        self, conn: Connection, account_pk: int, api_root: str, *, retry_of: str | None = None
    ) -> str:
        now = self.clock.now()
        while True:
            batch_id = hex_id(10)
            if _BATCH_ID_TAKEN.first(conn, {"batch_id": batch_id}) is None:
                break
        _INSERT_BATCH.run(
            conn,
            {
                "id": batch_id,
                "account_pk": account_pk,
                "status": BatchStatus.INGESTING.value,
                "total_operations": 0,
                "finished_operations": 0,
                "errored_operations": 0,
                "submitted_at": now_iso(self.clock),
                "submitted_ts": now,
                "completed_at": "",
                "updated_ts": now,
                "api_root": api_root,
                "retry_of": retry_of,
            },
        )
        return batch_id

    def insert_operations(
        self, conn: Connection, batch_id: str, first_seq: int, operations: Sequence[Operation]
    ) -> None:
        dumps = orjson.dumps
        _INSERT_OPERATION.run(
            conn,
            [
                (
                    batch_id,
                    first_seq + offset,
                    op.method,
                    op.path,
                    dumps(op.params).decode() if op.params else None,
                    op.body,
                    op.operation_id,
                )
                for offset, op in enumerate(operations)
            ],
        )
        _TOUCH_BATCH.run(conn, {"b_id": batch_id, "b_now": self.clock.now()})

    def publish(self, conn: Connection, batch_id: str, total: int) -> bool:
        """Make a fully stored batch visible, as `pending`; false if it was purged meanwhile."""
        return self._move(
            conn, batch_id, BatchStatus.INGESTING, BatchStatus.PENDING, total_operations=total
        )

    def count_unstarted(self, conn: Connection, account_pk: int, *, uploads: bool = False) -> int:
        """The account's batches that have not started; with `uploads`, those still being
        uploaded too (each becomes a pending batch unless its upload fails)."""
        statement = _UNSTARTED_OR_UPLOADING if uploads else _UNSTARTED
        return int(statement.scalar(conn, {"account_pk": account_pk}))

    def lock_account(self, conn: Connection, account_pk: int) -> None:
        """Hold the account's row until the transaction ends (PostgreSQL; SQLite writers
        run one at a time anyway), so that the quota checks and the insert of concurrent
        submits of one account run one after another."""
        _LOCK_ACCOUNT.all(conn, {"account_pk": account_pk})

    # --- reads -------------------------------------------------------------------------

    def get(
        self, conn: Connection, batch_id: str, account_pk: int | None = None
    ) -> BatchRow | None:
        """A batch clients can see (of `account_pk` when given), or None."""
        if account_pk is None:
            row = _BATCH_BY_ID.first(conn, {"batch_id": batch_id})
        else:
            row = _OWN_BATCH.first(conn, {"batch_id": batch_id, "account_pk": account_pk})
        return None if row is None else _batch_row(row)

    def read_own(self, database: Database, batch_id: str, account_pk: int) -> BatchRow | None:
        """The status read clients poll: one indexed row on a pooled DBAPI connection, without
        a SQLAlchemy transaction around it (its connect and BEGIN cost more than the query)."""
        row = _OWN_BATCH.first_pooled(
            database.reader, {"batch_id": batch_id, "account_pk": account_pk}
        )
        return None if row is None else _batch_row(row)

    def list_recent(
        self, conn: Connection, account_pk: int, retention_seconds: float, count: int, offset: int
    ) -> tuple[list[BatchRow], int]:
        """The account's batches of the retention period, newest first, and their total."""
        condition = and_(
            batches.c.account_pk == account_pk,
            batches.c.status.not_in(_HIDDEN),
            batches.c.submitted_ts >= self.clock.now() - retention_seconds,
        )
        total = conn.execute(
            select(func.count()).select_from(batches).where(condition)
        ).scalar_one()
        rows = conn.execute(
            select(*_BATCH_COLUMNS)
            .where(condition)
            .order_by(batches.c.submitted_ts.desc(), batches.c.id)
            .limit(count)
            .offset(offset)
        ).all()
        return [BatchRow(**row._mapping) for row in rows], int(total)

    def account_of(self, conn: Connection, account_pk: int) -> Account:
        """The account a batch runs for, as the route table sees it."""
        row = _ACCOUNT.first(conn, {"account_pk": account_pk})
        if row is None:
            raise LookupError(f"no account {account_pk}")
        return Account(*row)

    def cleanup_state(self, conn: Connection, batch_id: str) -> CleanupState | None:
        row = conn.execute(
            select(batches.c.status, batches.c.rows_pending).where(batches.c.id == batch_id)
        ).first()
        return (
            None if row is None else CleanupState(BatchStatus(row.status), bool(row.rows_pending))
        )

    # --- status moves (compare-and-set against BATCH_MOVES) -----------------------------

    def move(
        self, conn: Connection, batch_id: str, current: BatchStatus, target: BatchStatus
    ) -> bool:
        return self._move(conn, batch_id, current, target)

    def _move(
        self,
        conn: Connection,
        batch_id: str,
        current: BatchStatus,
        target: BatchStatus,
        **values: Any,
    ) -> bool:
        check_move(BATCH_MOVES, current, target)
        names = tuple(sorted(values))
        params = {f"v_{name}": values[name] for name in names}
        params.update(
            b_id=batch_id, b_from=current.value, b_to=target.value, b_now=self.clock.now()
        )
        return bool(_move_statement(names).run(conn, params))

    def touch(self, conn: Connection, batch_id: str, status: BatchStatus) -> None:
        """Show the sweep that the batch's current step is alive."""
        _TOUCH_IN_STATUS.run(
            conn, {"b_id": batch_id, "b_status": status.value, "b_now": self.clock.now()}
        )

    def plan_and_start(
        self,
        conn: Connection,
        batch_id: str,
        chunk_size: int,
        planned: Sequence[ChunkRange] | None = None,
    ) -> int:
        """Create the chunk rows (`planned` by `plan`, or planned here) and move
        `preprocessing → started`; returns the chunk count."""
        row = _BATCH_TOTAL.first(conn, {"batch_id": batch_id})
        if row is None or row[0] != BatchStatus.PREPROCESSING.value:
            return 0
        if _CHUNK_COUNT.scalar(conn, {"batch_id": batch_id}):
            chunks: Sequence[ChunkRange] = []
        elif planned is not None:
            chunks = planned
        else:
            chunks = self._plan(conn, batch_id, int(row[1]), chunk_size)
        _INSERT_CHUNKS.run(
            conn,
            [
                (batch_id, c.seq, c.start, c.stop, c.start, ChunkState.QUEUED.value, 0.0, 0)
                for c in chunks
            ],
        )
        self._move(conn, batch_id, BatchStatus.PREPROCESSING, BatchStatus.STARTED)
        return len(chunks)

    def plan(self, conn: Connection, batch_id: str, chunk_size: int) -> list[ChunkRange]:
        """The batch's chunks, keeping each member's operations in one (domain/chunking.py).

        Only reads: a million operations take seconds to read, which must not hold the
        SQLite writer (the stored operations never change after submit).
        """
        row = _BATCH_TOTAL.first(conn, {"batch_id": batch_id})
        return self._plan(conn, batch_id, int(row[1]) if row else 0, chunk_size)

    def _plan(
        self, conn: Connection, batch_id: str, total: int, chunk_size: int
    ) -> list[ChunkRange]:
        if total <= chunk_size:
            # One chunk runs in seq order: nothing to read.
            return plan_chunks(total, chunk_size)
        # A member is kept as the hash of its key, in an array: a million (list, address)
        # tuples would cost ~200 MB, a list of their hashes ~40 MB, the array 8 MB; two
        # members sharing a hash only share a chunk.
        members = array("q")
        append = members.append
        rows = conn.execution_options(yield_per=5_000).execute(
            _PLAN_COLUMNS, {"batch_id": batch_id}
        )
        for method, path, body in rows:
            member = member_of(method, path, body)
            append(NO_MEMBER if member is None else hash(member))
        return plan_hashed_chunks(members, chunk_size)

    def finish(self, conn: Connection, batch_id: str, archive_key: str) -> bool:
        return self._move(
            conn,
            batch_id,
            BatchStatus.FINALIZING,
            BatchStatus.FINISHED,
            completed_at=now_iso(self.clock),
            archive_key=archive_key,
        )

    # --- chunks ------------------------------------------------------------------------

    def claim_chunk(self, conn: Connection, batch_id: str, lease_seconds: float) -> Claim | None:
        """Take one queued chunk of the batch, or one whose holder's lease ran out, while the
        batch is `started` (chunks a preprocess planned after a cancel never run)."""
        now = self.clock.now()
        candidate = _CLAIM_CANDIDATE.first(conn, {"batch_id": batch_id, "now": now})
        if candidate is None:
            return None
        seq, next_seq, stop_seq = candidate
        token = uuid.uuid4().hex
        claim = {
            "batch_id": batch_id,
            "now": now,
            "seq": seq,
            "token": token,
            "lease_until": now + lease_seconds,
        }
        if not _CLAIM.run(conn, claim):
            return None
        return Claim(batch_id, seq, next_seq, stop_seq, token)

    def advance_chunk(
        self, conn: Connection, claim: Claim, start: int, stop: int, lease_seconds: float
    ) -> bool:
        """Move the chunk's cursor from `start` to `stop` if this claim still holds it.

        Run first in a group's transaction: on PostgreSQL it locks the chunk row until commit,
        so a second holder (after a lease expiry) cannot commit the same group twice.
        """
        target = ChunkState.DONE if stop >= claim.stop_seq else ChunkState.RUNNING
        check_move(CHUNK_MOVES, ChunkState.RUNNING, target)
        moved = _ADVANCE_CHUNK.run(
            conn,
            {
                "b_batch_id": claim.batch_id,
                "b_seq": claim.seq,
                "b_token": claim.token,
                "b_from": start,
                "b_to": stop,
                "b_lease": self.clock.now() + lease_seconds,
                "b_state": target.value,
            },
        )
        return moved == 1

    def release_claim(self, conn: Connection, claim: Claim) -> bool:
        """Make a chunk claimable at once, if this claim still holds it."""
        result = conn.execute(
            update(batch_chunks)
            .where(
                and_(
                    batch_chunks.c.batch_id == claim.batch_id,
                    batch_chunks.c.seq == claim.seq,
                    batch_chunks.c.lease_token == claim.token,
                    batch_chunks.c.state == ChunkState.RUNNING.value,
                )
            )
            .values(lease_until=0.0)
        )
        return bool(result.rowcount)

    def release_all_leases(self, conn: Connection) -> int:
        """After a restart of the one-process server nobody holds a lease: hand them back."""
        result = conn.execute(
            update(batch_chunks)
            .where(batch_chunks.c.state == ChunkState.RUNNING.value)
            .values(lease_until=0.0)
        )
        return int(result.rowcount)

    def chunk_progress(self, conn: Connection, batch_id: str) -> tuple[int, int]:
        """(chunks not done, chunks claimable now)."""
        now = self.clock.now()
        rows = _UNFINISHED_CHUNKS.all(conn, {"batch_id": batch_id})
        queued = ChunkState.QUEUED.value
        claimable = sum(1 for state, lease_until in rows if state == queued or lease_until < now)
        return len(rows), claimable

    # --- operations and results --------------------------------------------------------

    def load_operations(
        self, conn: Connection, batch_id: str, start: int, stop: int
    ) -> list[StoredOperation]:
        rows = _LOAD_OPERATIONS.all(conn, {"batch_id": batch_id, "start": start, "stop": stop})
        return [StoredOperation(*row) for row in rows]

    def insert_results(self, conn: Connection, rows: list[ResultRow]) -> None:
        """Result rows ahead of `record_results`, in the same (group's) transaction: a group
        whose answers are large writes them as it goes instead of holding them all."""
        _INSERT_RESULT.run(conn, _stored(rows))

    def record_results(
        self,
        conn: Connection,
        batch_id: str,
        rows: list[ResultRow],
        finished: int,
        errored: int,
        extra_pages: int,
    ) -> None:
        """Result rows and the counters they move, in the caller's (group's) transaction.

        Raises `BatchNotRunning` when the batch left `started` (a cancel, a delete).
        """
        _INSERT_RESULT.run(conn, _stored(rows))
        counted = _COUNT_RESULTS.run(
            conn,
            {
                "b_id": batch_id,
                "b_finished": finished,
                "b_errored": errored,
                "b_extra": extra_pages,
                "b_now": self.clock.now(),
            },
        )
        if counted != 1:
            raise BatchNotRunning(batch_id)

    def iter_results(self, conn: Connection, batch_id: str) -> Iterator[ResultFields]:
        """(status code, operation id, response) in submission order, streamed."""
        if conn.dialect.name == "sqlite":
            # sqlite3 steps its cursor as rows are fetched, so this streams too, without
            # SQLAlchemy's ~10 µs per row: that was most of writing a 1M batch's archive.
            # (psycopg's plain cursor would load every row at once: PostgreSQL keeps the
            # server-side cursor below.)
            cursor = _RESULTS_IN_ORDER.execute(conn, {"batch_id": batch_id})
            try:
                while rows := cursor.fetchmany(500):
                    for status_code, operation_id, response in rows:
                        yield status_code, operation_id, expand(response)
            finally:
                cursor.close()
            return
        result = conn.execution_options(yield_per=2_000).execute(
            _SELECT_RESULTS_IN_ORDER, {"batch_id": batch_id}
        )
        for status_code, operation_id, response in result:
            yield status_code, operation_id, expand(response)

    def status_of(self, conn: Connection, batch_id: str) -> BatchStatus | None:
        status = _BATCH_STATUS.scalar(conn, {"batch_id": batch_id})
        return None if status is None else BatchStatus(status)

    # --- cancel --------------------------------------------------------------------------

    def cancel(self, conn: Connection, batch_id: str) -> bool:
        """Stop a batch that has not finished running: every chunk ends where its cursor is,
        and the batch moves to `finalizing` with `canceled_at` set. False when it was not
        cancelable (finalizing or finished already, or gone).

        Exactly once holds across a cancel: a group's commit moves the batch counters with a
        compare-and-set on `started` (`record_results`), so a group commits entirely before
        the cancel or rolls back. Chunks go first, as in `mark_deleting`: a running group
        holds its chunk row until it commits and then updates the batch row, so this order
        waits for it instead of deadlocking with it.
        """
        for state in (ChunkState.QUEUED, ChunkState.RUNNING):
            check_move(CHUNK_MOVES, state, ChunkState.DONE)
        for status in CANCELABLE_BATCH_STATES:
            check_move(BATCH_MOVES, status, BatchStatus.FINALIZING)
        conn.execute(
            update(batch_chunks)
            .where(
                and_(
                    batch_chunks.c.batch_id == batch_id,
                    batch_chunks.c.state != ChunkState.DONE.value,
                )
            )
            .values(state=ChunkState.DONE.value, lease_until=0.0)
        )
        result = conn.execute(
            update(batches)
            .where(
                and_(
                    batches.c.id == batch_id,
                    batches.c.status.in_(sorted(CANCELABLE_BATCH_STATES)),
                )
            )
            .values(
                status=BatchStatus.FINALIZING.value,
                canceled_at=now_iso(self.clock),
                updated_ts=self.clock.now(),
            )
        )
        return result.rowcount == 1

    # --- removal -----------------------------------------------------------------------

    def mark_deleting(self, conn: Connection, batch_id: str) -> str | None:
        """Hide the batch and stop its work; returns its archive key. Rows are removed after.

        Chunks go first: a running group holds its chunk row until it commits and then
        updates the batch row, so this order waits for it instead of deadlocking with it, and
        the group's compare-and-set finds no chunk afterwards.
        """
        key = conn.execute(select(batches.c.archive_key).where(batches.c.id == batch_id)).scalar()
        conn.execute(delete(batch_chunks).where(batch_chunks.c.batch_id == batch_id))
        conn.execute(
            update(batches)
            .where(
                and_(
                    batches.c.id == batch_id,
                    batches.c.status.in_(sorted(sources(BATCH_MOVES, BatchStatus.DELETING))),
                )
            )
            .values(
                status=BatchStatus.DELETING.value, rows_pending=True, updated_ts=self.clock.now()
            )
        )
        return key

    def remove_row(self, conn: Connection, batch_id: str) -> None:
        # Chunks once more: on PostgreSQL, chunks planned by a preprocess that committed while
        # `mark_deleting` waited for it were invisible to its delete.
        conn.execute(delete(batch_chunks).where(batch_chunks.c.batch_id == batch_id))
        # A submit's idempotency key must not outlive the batch it names.
        conn.execute(delete(idempotency_keys).where(idempotency_keys.c.batch_id == batch_id))
        conn.execute(delete(batches).where(batches.c.id == batch_id))

    def rows_dropped(self, conn: Connection, batch_id: str) -> None:
        conn.execute(update(batches).where(batches.c.id == batch_id).values(rows_pending=False))

    def delete_page(self, conn: Connection, table_name: str, batch_id: str, limit: int) -> int:
        """Delete up to `limit` operation or result rows of a batch; returns how many went."""
        table = batch_operations if table_name == "operations" else batch_results
        seqs = (
            select(table.c.seq)
            .where(table.c.batch_id == batch_id)
            .order_by(table.c.seq)
            .limit(limit)
            .scalar_subquery()
        )
        upper = conn.execute(
            select(func.max(table.c.seq)).where(
                and_(table.c.batch_id == batch_id, table.c.seq.in_(seqs))
            )
        ).scalar()
        if upper is None:
            return 0
        result = conn.execute(
            delete(table).where(and_(table.c.batch_id == batch_id, table.c.seq <= upper))
        )
        return int(result.rowcount)

    # --- what the scheduler looks for --------------------------------------------------

    def pending_cleanups(
        self, conn: Connection, idle_seconds: float, limit: int = 100
    ) -> list[tuple[str, BatchStatus]]:
        """Batches being deleted, or finished with rows still to drop, idle since a crash."""
        rows = conn.execute(
            select(batches.c.id, batches.c.status)
            .where(
                and_(
                    batches.c.rows_pending.is_(True),
                    batches.c.updated_ts <= self.clock.now() - idle_seconds,
                    batches.c.status.in_([BatchStatus.DELETING.value, BatchStatus.FINISHED.value]),
                )
            )
            .limit(limit)
        ).all()
        return [(row.id, BatchStatus(row.status)) for row in rows]

    def stalled(self, conn: Connection, idle_seconds: float) -> list[tuple[str, BatchStatus]]:
        """(batch id, status) of batches in flight whose row has not moved for a while."""
        rows = conn.execute(
            select(batches.c.id, batches.c.status).where(
                and_(
                    batches.c.status.in_(sorted(IN_FLIGHT_BATCH_STATES)),
                    batches.c.updated_ts <= self.clock.now() - idle_seconds,
                )
            )
        ).all()
        return [(row.id, BatchStatus(row.status)) for row in rows]

    def expired(self, conn: Connection, retention_seconds: float, limit: int = 100) -> list[str]:
        """Batches submitted longer ago than the retention period."""
        cutoff = self.clock.now() - retention_seconds
        return list(
            conn.execute(
                select(batches.c.id).where(batches.c.submitted_ts < cutoff).limit(limit)
            ).scalars()
        )

    def stale_ingests(self, conn: Connection, idle_seconds: float) -> list[str]:
        """Uploads that stored no page for `idle_seconds` (negative: every upload)."""
        cutoff = self.clock.now() - idle_seconds
        return list(
            conn.execute(
                select(batches.c.id).where(
                    and_(
                        batches.c.status == BatchStatus.INGESTING.value,
                        batches.c.updated_ts < cutoff,
                    )
                )
            ).scalars()
        )
