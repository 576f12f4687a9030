"""SQL for batches: rows, operations pages, chunks with leases, results."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)

from conveyor.domain.batch_status import BatchStatus
from conveyor.domain.chunking import plan_chunks
from conveyor.domain.ids import hex_id, now_iso
from conveyor.domain.operations import Operation
from conveyor.storage.database import Database
from conveyor.storage.fast import RawStatement
from conveyor.storage.tables import (
    accounts_table,
    api_keys,
    batch_chunks,
    batch_operations,
    batch_results,
    batches,
)

INGESTING = "ingesting"  # internal: never shown; the batch does not exist for clients yet
DELETING = "deleting"  # internal: being removed; gone for clients, its rows still going
HIDDEN = (INGESTING, DELETING)
UNSTARTED = (BatchStatus.PENDING.value, BatchStatus.PREPROCESSING.value)
QUEUED, RUNNING, DONE = "queued", "running", "done"


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
)


# --- ingest --------------------------------------------------------------------------------


def create_ingesting(conn: Connection, account_pk: int, api_root: str) -> str:
    now = time.time()
    while True:
        batch_id = hex_id(10)
        taken = conn.execute(select(batches.c.id).where(batches.c.id == batch_id)).first()
        if taken is None:
            break
    conn.execute(
        insert(batches).values(
            id=batch_id,
            account_pk=account_pk,
            status=INGESTING,
            total_operations=0,
            finished_operations=0,
            errored_operations=0,
            submitted_at=now_iso(),
            submitted_ts=now,
            completed_at="",
            updated_ts=now,
            api_root=api_root,
        )
    )
    return batch_id


_OPERATION_COLUMNS = ("batch_id", "seq", "method", "path", "params", "body", "operation_id")
# Ingest and the executor move millions of these rows: DBAPI executemany, not Core's.
_INSERT_OPERATION = RawStatement(
    insert(batch_operations).values({name: bindparam(name) for name in _OPERATION_COLUMNS})
)


def insert_operations(
    conn: Connection, batch_id: str, first_seq: int, operations: Sequence[Operation]
) -> None:
    _INSERT_OPERATION.run_many(
        conn,
        [
            {
                "batch_id": batch_id,
                "seq": first_seq + offset,
                "method": op.method,
                "path": op.path,
                "params": orjson.dumps(op.params).decode() if op.params else None,
                "body": op.body,
                "operation_id": op.operation_id,
            }
            for offset, op in enumerate(operations)
        ],
    )
    conn.execute(update(batches).where(batches.c.id == batch_id).values(updated_ts=time.time()))


def publish(conn: Connection, batch_id: str, total: int) -> bool:
    """Make a fully stored batch visible, as `pending`; false if it was purged meanwhile."""
    result = conn.execute(
        update(batches)
        .where(and_(batches.c.id == batch_id, batches.c.status == INGESTING))
        .values(status=BatchStatus.PENDING.value, total_operations=total, updated_ts=time.time())
    )
    return bool(result.rowcount)


def count_unstarted(conn: Connection, account_pk: int) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(batches)
            .where(and_(batches.c.account_pk == account_pk, batches.c.status.in_(UNSTARTED)))
        ).scalar_one()
    )


# --- reads ---------------------------------------------------------------------------------


def get_batch(conn: Connection, batch_id: str, account_pk: int | None = None) -> BatchRow | None:
    condition = and_(batches.c.id == batch_id, batches.c.status.not_in(HIDDEN))
    if account_pk is not None:
        condition = and_(condition, batches.c.account_pk == account_pk)
    row = conn.execute(select(*_BATCH_COLUMNS).where(condition)).first()
    return None if row is None else BatchRow(**row._mapping)


_OWN_BATCH = RawStatement(
    select(*_BATCH_COLUMNS).where(
        and_(
            batches.c.id == bindparam("batch_id"),
            batches.c.account_pk == bindparam("account_pk"),
            # Literal: a RawStatement passes only the parameters it is given.
            batches.c.status.not_in([literal_column(f"'{status}'") for status in HIDDEN]),
        )
    )
)


def read_own_batch(database: Database, batch_id: str, account_pk: int) -> BatchRow | None:
    """The status read clients poll: one indexed row on a pooled DBAPI connection, without a
    SQLAlchemy transaction around it (its connect and BEGIN cost more than the query)."""
    raw = database.reader.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            sql, positions = _OWN_BATCH._sql(database.reader.dialect)
            params = {"batch_id": batch_id, "account_pk": account_pk}
            if positions is None:
                cursor.execute(sql, params)
            else:
                cursor.execute(sql, tuple(params[name] for name in positions))
            row = cursor.fetchone()
        finally:
            cursor.close()
        if not database.is_sqlite:
            raw.rollback()  # psycopg opened a transaction for the SELECT: end it
    finally:
        raw.close()
    return None if row is None else BatchRow(*row)


def list_batches(
    conn: Connection, account_pk: int, since_ts: float, count: int, offset: int
) -> tuple[list[BatchRow], int]:
    condition = and_(
        batches.c.account_pk == account_pk,
        batches.c.status.not_in(HIDDEN),
        batches.c.submitted_ts >= since_ts,
    )
    total = conn.execute(select(func.count()).select_from(batches).where(condition)).scalar_one()
    rows = conn.execute(
        select(*_BATCH_COLUMNS)
        .where(condition)
        .order_by(batches.c.submitted_ts.desc(), batches.c.id)
        .limit(count)
        .offset(offset)
    ).all()
    return [BatchRow(**row._mapping) for row in rows], int(total)


def account_of_batch(conn: Connection, account_pk: int) -> tuple[Any, ...]:
    row = conn.execute(
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
        ).where(accounts_table.c.id == account_pk)
    ).one()
    return tuple(row)


# --- status moves (compare-and-set: a duplicate message finds nothing to do) ---------------


def move_status(conn: Connection, batch_id: str, current: str, target: str) -> bool:
    result = conn.execute(
        update(batches)
        .where(and_(batches.c.id == batch_id, batches.c.status == current))
        .values(status=target, updated_ts=time.time())
    )
    return bool(result.rowcount)


def touch(conn: Connection, batch_id: str, status: str) -> None:
    """Show the sweep that the batch's current step is alive."""
    conn.execute(
        update(batches)
        .where(and_(batches.c.id == batch_id, batches.c.status == status))
        .values(updated_ts=time.time())
    )


def plan_and_start(conn: Connection, batch_id: str, chunk_size: int) -> int:
    """Create the chunk rows and move `preprocessing → started`; returns the chunk count."""
    row = conn.execute(
        select(batches.c.status, batches.c.total_operations).where(batches.c.id == batch_id)
    ).first()
    if row is None or row.status != BatchStatus.PREPROCESSING.value:
        return 0
    existing = conn.execute(
        select(func.count()).select_from(batch_chunks).where(batch_chunks.c.batch_id == batch_id)
    ).scalar_one()
    chunks = plan_chunks(row.total_operations, chunk_size) if row.total_operations else []
    if not existing and chunks:
        conn.execute(
            insert(batch_chunks),
            [
                {
                    "batch_id": batch_id,
                    "seq": chunk.seq,
                    "start_seq": chunk.start,
                    "stop_seq": chunk.stop,
                    "next_seq": chunk.start,
                    "state": QUEUED,
                    "lease_until": 0.0,
                    "attempts": 0,
                }
                for chunk in chunks
            ],
        )
    move_status(conn, batch_id, BatchStatus.PREPROCESSING.value, BatchStatus.STARTED.value)
    return len(chunks)


# --- chunks ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    batch_id: str
    seq: int
    next_seq: int
    stop_seq: int
    token: str


def claim_chunk(conn: Connection, batch_id: str, lease_seconds: float) -> Claim | None:
    """Take one queued chunk of the batch, or one whose holder's lease ran out."""
    now = time.time()
    claimable = and_(
        batch_chunks.c.batch_id == batch_id,
        or_(
            batch_chunks.c.state == QUEUED,
            and_(batch_chunks.c.state == RUNNING, batch_chunks.c.lease_until < now),
        ),
    )
    candidate = conn.execute(
        select(batch_chunks.c.seq, batch_chunks.c.next_seq, batch_chunks.c.stop_seq)
        .where(claimable)
        .order_by(batch_chunks.c.seq)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if candidate is None:
        return None
    token = uuid.uuid4().hex
    taken = conn.execute(
        update(batch_chunks)
        .where(and_(claimable, batch_chunks.c.seq == candidate.seq))
        .values(
            state=RUNNING,
            lease_token=token,
            lease_until=now + lease_seconds,
            attempts=batch_chunks.c.attempts + 1,
        )
    ).rowcount
    if not taken:
        return None
    return Claim(batch_id, candidate.seq, candidate.next_seq, candidate.stop_seq, token)


_ADVANCE_CHUNK = (
    update(batch_chunks)
    .where(
        and_(
            batch_chunks.c.batch_id == bindparam("b_batch_id"),
            batch_chunks.c.seq == bindparam("b_seq"),
            batch_chunks.c.lease_token == bindparam("b_token"),
            batch_chunks.c.next_seq == bindparam("b_from"),
            batch_chunks.c.state == RUNNING,
        )
    )
    .values(
        next_seq=bindparam("b_to"),
        lease_until=bindparam("b_lease"),
        state=bindparam("b_state"),
    )
)


def advance_chunk(
    conn: Connection, claim: Claim, start: int, stop: int, lease_seconds: float
) -> bool:
    """Move the chunk's cursor from `start` to `stop` if this claim still holds it.

    Run first in a group's transaction: on PostgreSQL it locks the chunk row until commit, so
    a second holder (after a lease expiry) cannot commit the same group twice.
    """
    result = conn.execute(
        _ADVANCE_CHUNK,
        {
            "b_batch_id": claim.batch_id,
            "b_seq": claim.seq,
            "b_token": claim.token,
            "b_from": start,
            "b_to": stop,
            "b_lease": time.time() + lease_seconds,
            "b_state": DONE if stop >= claim.stop_seq else RUNNING,
        },
    )
    return result.rowcount == 1


def release_claim(conn: Connection, claim: Claim) -> bool:
    """Make a chunk claimable at once, if this claim still holds it."""
    result = conn.execute(
        update(batch_chunks)
        .where(
            and_(
                batch_chunks.c.batch_id == claim.batch_id,
                batch_chunks.c.seq == claim.seq,
                batch_chunks.c.lease_token == claim.token,
                batch_chunks.c.state == RUNNING,
            )
        )
        .values(lease_until=0.0)
    )
    return bool(result.rowcount)


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


@dataclass(frozen=True, slots=True)
class StoredOperation:
    seq: int
    method: str
    path: str
    params: str | None
    body: str | None
    operation_id: str | None


def load_operations(
    conn: Connection, batch_id: str, start: int, stop: int
) -> list[StoredOperation]:
    rows = _LOAD_OPERATIONS.all(conn, {"batch_id": batch_id, "start": start, "stop": stop})
    return [StoredOperation(*row) for row in rows]


_RESULT_COLUMNS = ("batch_id", "seq", "page", "status_code", "operation_id", "response")
_INSERT_RESULT = RawStatement(
    insert(batch_results).values({name: bindparam(name) for name in _RESULT_COLUMNS})
)
_COUNT_RESULTS = (
    update(batches)
    .where(batches.c.id == bindparam("b_id"))
    .values(
        finished_operations=batches.c.finished_operations + bindparam("b_finished"),
        errored_operations=batches.c.errored_operations + bindparam("b_errored"),
        total_operations=batches.c.total_operations + bindparam("b_extra"),
        updated_ts=bindparam("b_now"),
    )
)


def record_results(
    conn: Connection,
    batch_id: str,
    rows: list[dict[str, Any]],
    finished: int,
    errored: int,
    extra_pages: int,
) -> None:
    _INSERT_RESULT.run_many(conn, rows)
    conn.execute(
        _COUNT_RESULTS,
        {
            "b_id": batch_id,
            "b_finished": finished,
            "b_errored": errored,
            "b_extra": extra_pages,
            "b_now": time.time(),
        },
    )


def chunk_progress(conn: Connection, batch_id: str) -> tuple[int, int]:
    """(chunks not done, chunks claimable now)."""
    now = time.time()
    rows = conn.execute(
        select(batch_chunks.c.state, batch_chunks.c.lease_until).where(
            and_(batch_chunks.c.batch_id == batch_id, batch_chunks.c.state != DONE)
        )
    ).all()
    claimable = sum(1 for r in rows if r.state == QUEUED or r.lease_until < now)
    return len(rows), claimable


def iter_results(conn: Connection, batch_id: str) -> Iterator[Any]:
    result = conn.execution_options(yield_per=2_000).execute(
        select(batch_results.c.status_code, batch_results.c.operation_id, batch_results.c.response)
        .where(batch_results.c.batch_id == batch_id)
        .order_by(batch_results.c.seq, batch_results.c.page)
    )
    yield from result


def finish(conn: Connection, batch_id: str, archive_key: str) -> bool:
    result = conn.execute(
        update(batches)
        .where(and_(batches.c.id == batch_id, batches.c.status == BatchStatus.FINALIZING.value))
        .values(
            status=BatchStatus.FINISHED.value,
            completed_at=now_iso(),
            archive_key=archive_key,
            updated_ts=time.time(),
            rows_pending=True,
        )
    )
    return bool(result.rowcount)


# --- removal -------------------------------------------------------------------------------


def mark_deleting(conn: Connection, batch_id: str) -> str | None:
    """Hide the batch and stop its work; returns its archive key. Rows are removed after.

    Chunks go first: a running group holds its chunk row until it commits and then updates
    the batch row, so this order waits for it instead of deadlocking with it, and the
    group's compare-and-set finds no chunk afterwards.
    """
    key = conn.execute(select(batches.c.archive_key).where(batches.c.id == batch_id)).scalar()
    conn.execute(delete(batch_chunks).where(batch_chunks.c.batch_id == batch_id))
    conn.execute(
        update(batches)
        .where(batches.c.id == batch_id)
        .values(status=DELETING, rows_pending=True, updated_ts=time.time())
    )
    return key


def remove_batch_row(conn: Connection, batch_id: str) -> None:
    # Chunks once more: on PostgreSQL, chunks planned by a preprocess that committed while
    # `mark_deleting` waited for it were invisible to its delete.
    conn.execute(delete(batch_chunks).where(batch_chunks.c.batch_id == batch_id))
    conn.execute(delete(batches).where(batches.c.id == batch_id))


def rows_dropped(conn: Connection, batch_id: str) -> None:
    conn.execute(update(batches).where(batches.c.id == batch_id).values(rows_pending=False))


def pending_cleanups(conn: Connection, updated_before: float, limit: int = 100) -> list[str]:
    """Batches being deleted, or finished with rows still to drop, idle since a crash."""
    return list(
        conn.execute(
            select(batches.c.id)
            .where(
                and_(
                    batches.c.rows_pending.is_(True),
                    batches.c.updated_ts <= updated_before,
                    batches.c.status.in_([DELETING, BatchStatus.FINISHED.value]),
                )
            )
            .limit(limit)
        ).scalars()
    )


def delete_page(conn: Connection, table_name: str, batch_id: str, limit: int) -> int:
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


def sweep_candidates(conn: Connection, older_than: float) -> list[tuple[str, str]]:
    """(batch id, status) of batches in flight whose row has not moved since `older_than`."""
    return [
        (row.id, row.status)
        for row in conn.execute(
            select(batches.c.id, batches.c.status).where(
                and_(
                    batches.c.status.in_(
                        [
                            BatchStatus.PENDING.value,
                            BatchStatus.PREPROCESSING.value,
                            BatchStatus.STARTED.value,
                            BatchStatus.FINALIZING.value,
                        ]
                    ),
                    batches.c.updated_ts <= older_than,
                )
            )
        )
    ]


def expired_batch_ids(conn: Connection, submitted_before: float, limit: int = 100) -> list[str]:
    return list(
        conn.execute(
            select(batches.c.id).where(batches.c.submitted_ts < submitted_before).limit(limit)
        ).scalars()
    )


def stale_ingests(conn: Connection, updated_before: float) -> list[str]:
    return list(
        conn.execute(
            select(batches.c.id).where(
                and_(batches.c.status == INGESTING, batches.c.updated_ts < updated_before)
            )
        ).scalars()
    )


def release_all_leases(conn: Connection) -> int:
    """After a restart of the one-process server nobody holds a lease: hand them back."""
    result = conn.execute(
        update(batch_chunks).where(batch_chunks.c.state == RUNNING).values(lease_until=0.0)
    )
    return int(result.rowcount)
