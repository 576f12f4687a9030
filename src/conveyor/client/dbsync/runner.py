"""A sync from start to end: chunk after chunk, read → submit → wait → tags → write back.

Each step is recorded in the state before the next begins, so a run stopped anywhere (Ctrl-C,
a crash, a lost connection) is resumed by running it again:

- a chunk whose batch id is recorded is waited for and written back, never sent again;
- a chunk with only an idempotency key is submitted again under the same key: its operations
  are rebuilt from the same rows, so the body is the same and a server that deduplicates on
  ``Idempotency-Key`` answers with the batch the lost submit made;
- a chunk partly written back goes on after the rows already written.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.engine import Connection, Engine

from conveyor.client.client import DEFAULT_WAIT_TIMEOUT, Client, new_idempotency_key
from conveyor.client.dbsync.errors import SyncError
from conveyor.client.dbsync.mapping import NO_EMAIL, MappingError, MemberMapping
from conveyor.client.dbsync.progress import SyncReporter
from conveyor.client.dbsync.source import (
    SourceQuery,
    Watermark,
    decode_watermark,
    encode_watermark,
    open_source,
)
from conveyor.client.dbsync.spool import ChunkSpool, DuplicateKey
from conveyor.client.dbsync.state import (
    ChunkState,
    FileState,
    MemoryState,
    StateStore,
    SyncState,
    TableState,
)
from conveyor.client.dbsync.waiting import PollingWaiter, Waiter, WebhookWaiter
from conveyor.client.dbsync.writeback import ErrorsFile, WriteBack
from conveyor.client.errors import ConveyorApiError
from conveyor.client.models import Batch
from conveyor.client.operations import Operation

DEFAULT_CHUNK_SIZE = 100_000
DEFAULT_WRITE_BACK_SIZE = 2_000
NO_RESULT = "the batch's results hold nothing for this operation"
# A chunk's batch id when none of its rows could be sent: there is nothing to wait for.
NOTHING_SENT = ""


@dataclass(frozen=True)
class SyncOptions:
    """Everything ``conveyor members sync`` takes; see docs/sync.md."""

    source_url: str
    query: str
    list_id: str
    email_column: str = "email"
    status_column: str = "status"
    tags_column: str = "tags"
    merge_map: Mapping[str, str] = field(default_factory=dict)
    key_column: str = "id"
    since_column: str | None = None
    state_file: Path | None = None
    state_table: str | None = None
    write_back: str | None = None
    errors_file: Path | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    write_back_size: int = DEFAULT_WRITE_BACK_SIZE
    status_if_new: str = "subscribed"
    webhook_listen: str | None = None
    webhook_url: str | None = None
    timeout: float = DEFAULT_WAIT_TIMEOUT
    count_rows: bool = True

    def check(self) -> None:
        if self.write_back is None and self.errors_file is None:
            raise SyncError(
                "give --write-back (a statement run for every result) or --errors FILE: "
                "failed rows must go somewhere"
            )
        if self.state_file is not None and self.state_table is not None:
            raise SyncError("give --state or --state-table, not both")
        if self.since_column and self.state_file is None and self.state_table is None:
            raise SyncError(
                "--since-column needs a place to keep how far the last run got: "
                "--state FILE or --state-table NAME"
            )
        if self.chunk_size < 1 or self.write_back_size < 1:
            raise SyncError("chunk and write-back sizes must be at least 1")


@dataclass
class SyncSummary:
    rows_read: int = 0
    operations_sent: int = 0
    succeeded: int = 0
    failed: int = 0
    without_email: int = 0
    chunks: int = 0
    resumed_chunks: int = 0
    batch_ids: list[str] = field(default_factory=list)
    replayed_batches: int = 0
    watermark: list[Any] | None = None
    seconds: float = 0.0
    state: str = "none"
    errors_file: Path | None = None

    @property
    def ok(self) -> bool:
        """True when every row read went in (no failure, no row without an address)."""
        return self.failed == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "operations_sent": self.operations_sent,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "without_email": self.without_email,
            "chunks": self.chunks,
            "resumed_chunks": self.resumed_chunks,
            "batch_ids": self.batch_ids,
            "replayed_batches": self.replayed_batches,
            "watermark": self.watermark,
            "seconds": round(self.seconds, 3),
            "state": self.state,
            "errors_file": str(self.errors_file) if self.errors_file else None,
        }


def sync_id_of(client: Client, options: SyncOptions) -> str:
    """Names one sync: the same query into the same list of the same server, same order."""
    identity = [
        client.base_url,
        options.list_id,
        options.query.strip().rstrip(";").strip(),
        options.key_column,
        options.since_column,
    ]
    return hashlib.sha256(orjson.dumps(identity)).hexdigest()[:32]


def run_sync(
    client: Client, options: SyncOptions, reporter: SyncReporter | None = None
) -> SyncSummary:
    options.check()
    report = reporter or SyncReporter()
    started = time.monotonic()
    engine = open_source(options.source_url)
    waiter: Waiter | None = None
    try:
        run = _Run(client, options, engine, report)
        _check_list(client, options.list_id)
        waiter = (
            WebhookWaiter(client, options.webhook_listen, public_url=options.webhook_url)
            if options.webhook_listen
            else PollingWaiter(client)
        )
        if isinstance(waiter, WebhookWaiter):
            report.note(f"waiting for batches by webhook at {waiter.url}")
        run.execute(waiter)
        run.summary.seconds = time.monotonic() - started
        return run.summary
    finally:
        try:
            if waiter is not None:
                waiter.close()
        finally:
            report.close()
            engine.dispose()


def _check_list(client: Client, list_id: str) -> None:
    try:
        client.request("GET", f"lists/{_quote(list_id)}", params={"fields": "id"})
    except ConveyorApiError as exc:
        if exc.status == 404:
            raise SyncError(
                f"there is no audience (list) {list_id!r} on {client.base_url}"
            ) from None
        raise


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


class _Run:
    def __init__(
        self, client: Client, options: SyncOptions, engine: Engine, report: SyncReporter
    ) -> None:
        self.client = client
        self.options = options
        self.engine = engine
        self.report = report
        self.source = SourceQuery(engine, options.query, options.key_column, options.since_column)
        self.columns = self.source.columns()
        try:
            self.mapping = MemberMapping.resolve(
                self.columns,
                email_column=options.email_column,
                status_column=options.status_column,
                tags_column=options.tags_column,
                merge_map=options.merge_map,
                reserved=[c for c in (options.key_column, options.since_column) if c],
            )
        except MappingError as exc:
            raise SyncError(str(exc)) from None
        self.order_positions = self.source.order_positions(self.columns)
        self.key_position = self.columns.index(options.key_column)
        self.store = self._store()
        self.writer = WriteBack(engine, options.write_back, self.columns)
        self.summary = SyncSummary(state=self.store.describe(), errors_file=options.errors_file)
        sync_id = sync_id_of(client, options)
        self.state = self.store.load(sync_id) or SyncState(sync_id)

    def _store(self) -> StateStore:
        if self.options.state_file is not None:
            return FileState(self.options.state_file)
        if self.options.state_table is not None:
            return TableState(self.engine, self.options.state_table)
        return MemoryState()

    # -- the loop ---------------------------------------------------------------------------

    def execute(self, waiter: Waiter) -> None:
        after = decode_watermark(self.state.watermark)
        total = self.source.count(after) if self.options.count_rows else None
        self.report.started(total, self.store.describe())
        errors = ErrorsFile(self.options.errors_file) if self.options.errors_file else None
        try:
            if self.state.chunk is not None:
                self.summary.resumed_chunks += 1
                self._process(self.state.chunk, waiter, errors, resumed=True)
            while True:
                chunk_spool = self._next_chunk()
                if chunk_spool is None:
                    break
                chunk, spool = chunk_spool
                with spool:
                    self._continue(chunk, spool, waiter, errors)
        finally:
            if errors is not None:
                errors.close()
        self.summary.watermark = self.state.watermark

    def _next_chunk(self) -> tuple[ChunkState, ChunkSpool] | None:
        after = decode_watermark(self.state.watermark)
        spool = ChunkSpool()
        try:
            last = self._fill(spool, after, None, limit=self.options.chunk_size)
            if last is None:
                spool.close()
                return None
            chunk = ChunkState(
                seq=self.state.next_seq,
                start=self.state.watermark,
                end=encode_watermark(last) or [],
                rows=spool.rows,
                idempotency_key=new_idempotency_key(),
            )
            # Saved before anything is sent: a crash from here on finds the chunk and its key.
            self.state.chunk = chunk
            self.state.next_seq += 1
            self.store.save(self.state)
            return chunk, spool
        except BaseException:
            spool.close()
            raise

    def _process(
        self, chunk: ChunkState, waiter: Waiter, errors: ErrorsFile | None, *, resumed: bool
    ) -> None:
        with ChunkSpool() as spool:
            start = decode_watermark(chunk.start)
            end = decode_watermark(chunk.end)
            self._fill(spool, start, end, limit=None)
            if spool.rows != chunk.rows:
                self.report.note(
                    f"chunk {chunk.seq}: the source now has {spool.rows} rows in the chunk's "
                    f"range where it had {chunk.rows}; rows changed since the interrupted run"
                )
            step = (
                "writing back" if chunk.batch_id is not None and chunk.written
                else "waiting for its batch" if chunk.batch_id is not None
                else "submitting it again under the same idempotency key"
            )  # fmt: skip
            self.report.note(f"resuming chunk {chunk.seq} ({chunk.rows} rows): {step}")
            self._continue(chunk, spool, waiter, errors)

    def _fill(
        self,
        spool: ChunkSpool,
        after: Watermark | None,
        up_to: Watermark | None,
        *,
        limit: int | None,
    ) -> Watermark | None:
        """Read rows into the spool; the last row's sort key, or None when there was none."""
        last: Watermark | None = None
        mapping = self.mapping
        positions = self.order_positions
        read = 0
        with self.engine.connect() as conn:
            # One row past the chunk: if it shares the last row's sort key, the key is not
            # unique and the next chunk would skip it.
            rows = self.source.rows(conn, after, up_to, limit=None if limit is None else limit + 1)
            for row in rows:
                mark = tuple(row[p] for p in positions)
                if last is not None and mark == last:
                    raise SyncError(self._duplicate_message(row))
                if limit is not None and read == limit:
                    break
                last = mark
                read += 1
                email = mapping.email_of(row)
                try:
                    spool.add_row(
                        str(row[self.key_position]),
                        row,
                        email,
                        local_error=None if email else NO_EMAIL,
                        tagged=bool(email) and bool(mapping.tags_of(row)),
                    )
                except DuplicateKey:
                    raise SyncError(self._duplicate_message(row)) from None
                if read % 1000 == 0:
                    self.report.read(1000)
            try:
                spool.flush()
            except DuplicateKey:
                raise SyncError(self._duplicate_message(None)) from None
        self.report.read(read % 1000)
        self.summary.rows_read += read
        return last

    def _duplicate_message(self, row: Sequence[Any] | None) -> str:
        shown = f" ({row[self.key_position]!r})" if row is not None else ""
        return (
            f"the key column {self.options.key_column!r} repeats a value{shown}: it must be "
            "unique per row (name another with --key-column)"
        )

    def _continue(
        self, chunk: ChunkState, spool: ChunkSpool, waiter: Waiter, errors: ErrorsFile | None
    ) -> None:
        list_id = self.options.list_id
        mapping = self.mapping
        status_if_new = self.options.status_if_new

        def upserts() -> Iterator[Operation]:
            for operation_id, values in spool.sendable():
                yield mapping.upsert(list_id, values, operation_id, status_if_new=status_if_new)

        batch_id = self._submitted(
            chunk, "members", spool.sendable_rows, upserts,
            key_field="idempotency_key", batch_field="batch_id",
        )  # fmt: skip
        if batch_id:
            self._wait(batch_id, waiter)
            with self.client.results(batch_id) as results:
                spool.record_results(results)
        if mapping.tags is not None and batch_id:

            def tag_operations() -> Iterator[Operation]:
                for operation_id, values in spool.to_tag():
                    operation = mapping.tag(list_id, values, operation_id)
                    if operation is not None:
                        yield operation

            tagging = spool.count_to_tag()
            if chunk.tags_idempotency_key is None and chunk.tags_batch_id is None:
                chunk.tags_idempotency_key = new_idempotency_key()
                self.store.save(self.state)
            tags_batch = self._submitted(
                chunk, "tags", tagging, tag_operations,
                key_field="tags_idempotency_key", batch_field="tags_batch_id",
            )  # fmt: skip
            if tags_batch:
                self._wait(tags_batch, waiter)
                with self.client.results(tags_batch) as results:
                    spool.record_tag_results(results)
        self._write_back(chunk, spool, errors)
        self.state.watermark = chunk.end
        self.state.chunk = None
        self.state.chunks_done += 1
        self.store.save(self.state)
        self.summary.chunks += 1
        self.report.chunk_done(chunk.seq, spool.rows)

    def _submitted(
        self,
        chunk: ChunkState,
        kind: str,
        count: int,
        operations: Callable[[], Iterator[Operation]],
        *,
        key_field: str,
        batch_field: str,
    ) -> str:
        """The chunk's batch of this kind: the recorded one, or a new submit (then recorded)."""
        recorded = getattr(chunk, batch_field)
        if recorded is not None:
            if recorded:
                self.summary.batch_ids.append(recorded)
            return str(recorded)
        if count == 0:
            setattr(chunk, batch_field, NOTHING_SENT)
            self.store.save(self.state)
            return NOTHING_SENT
        batch = self.client.submit(operations(), idempotency_key=getattr(chunk, key_field))
        setattr(chunk, batch_field, batch.id)
        self.store.save(self.state)
        self.summary.batch_ids.append(batch.id)
        self.summary.operations_sent += batch.total_operations
        self.summary.replayed_batches += batch.replayed
        self.report.submitted(chunk.seq, kind, batch, batch.replayed)
        return batch.id

    def _wait(self, batch_id: str, waiter: Waiter) -> Batch:
        return waiter.wait(batch_id, timeout=self.options.timeout, progress=self.report.batch)

    def _write_back(self, chunk: ChunkState, spool: ChunkSpool, errors: ErrorsFile | None) -> None:
        shared = self.store.shares_source_transaction
        group_size = self.options.write_back_size
        outcomes = spool.outcomes(skip=chunk.written, missing=NO_RESULT)
        while True:
            group = [outcome for _, outcome in zip(range(group_size), outcomes, strict=False)]
            if not group:
                return
            failed = [outcome for outcome in group if not outcome.ok]

            def record(conn: Connection, count: int) -> None:
                chunk.written += count
                if shared:
                    self.store.save(self.state, conn)

            before = chunk.written
            try:
                self.writer.write(group, record)
            except BaseException:
                chunk.written = before  # the transaction rolled back, its progress with it
                raise
            if not shared:
                self.store.save(self.state)
            if errors is not None and failed:
                for outcome in failed:
                    errors.write(self.columns, outcome)
                errors.flush()
            self.summary.failed += len(failed)
            self.summary.succeeded += len(group) - len(failed)
            self.summary.without_email += sum(1 for o in failed if o.error == NO_EMAIL)
            self.report.written(len(group) - len(failed), len(failed))
