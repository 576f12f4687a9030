"""The batch life cycle: preprocess, work through chunks, finalize, delete, sweep."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

from sqlalchemy import Connection

from conveyor.batches.executor import run_group
from conveyor.batches.group_hooks import GroupHooks, NoHooks
from conveyor.batches.prepared import GroupPreparer, PreparedGroup
from conveyor.batches.render import render_batch
from conveyor.domain.accounts import Account
from conveyor.domain.archive import ResultFields, archive_name, write_archive
from conveyor.domain.chunking import ChunkRange, next_group_size
from conveyor.domain.states import BatchStatus
from conveyor.domain.steps import SWEEP_STEP, FollowUp, Step
from conveyor.domain.webhook_payload import CompletedBatch
from conveyor.marketing.routing import RouteTable
from conveyor.settings import BatchSettings
from conveyor.storage.batches import BatchNotRunning, BatchStore, Claim
from conveyor.storage.blobs import BlobStore
from conveyor.storage.database import Database
from conveyor.storage.idempotency import IdempotencyStore
from conveyor.storage.webhooks import WebhookStore

log = logging.getLogger("conveyor.batches")


@dataclass
class BatchEngine:
    """Runs a batch's background steps: preprocess, work (chunks), finalize, cleanup.

    Each step is idempotent and guarded by a compare-and-set on the database rows, and
    answers which steps should follow it (`FollowUp`); the runtime turns those into broker
    messages and `domain.steps` decides when each runs. The database stays the truth
    (docs/architecture.md decision 1). Transactions are the engine's (a group of operations
    is one); the SQL and the clock are storage's.
    """

    database: Database
    routes: RouteTable
    blobs: BlobStore
    settings: BatchSettings
    store: BatchStore
    webhook_store: WebhookStore
    idempotency_keys: IdempotencyStore
    hooks: GroupHooks = field(default_factory=NoHooks)
    # Helper processes that answer groups outside the writer (SQLite; batches/prepared.py).
    preparer: GroupPreparer | None = None
    # The group size each batch's last group settled on (`next_group_size`), so a work step
    # after a time slice does not start again with a group that holds the writer too long.
    # A hint only, in this process: a missing entry starts at `group_size`.
    _group_sizes: dict[str, int] = field(default_factory=dict, repr=False)
    # The next group of a chunk, being prepared while the writer writes the one before it;
    # kept across work steps, so the step that resumes the chunk finds it.
    _ahead: dict[tuple[str, int], _Ahead] = field(default_factory=dict, repr=False)

    # --- preprocess ----------------------------------------------------------------------

    def preprocess(self, batch_id: str) -> list[FollowUp]:
        store = self.store
        self.hooks.before_start(batch_id)
        with self.database.write() as conn:
            store.move(conn, batch_id, BatchStatus.PENDING, BatchStatus.PREPROCESSING)
        chunk_size = self.settings.chunk_size
        planned = self._plan_elsewhere(batch_id, chunk_size)
        if planned is None:
            with self.database.read() as conn:
                # Outside the writer: reading a big batch's operations takes seconds.
                planned = store.plan(conn, batch_id, chunk_size)
        with self.database.write() as conn:
            chunks = store.plan_and_start(conn, batch_id, chunk_size, planned)
            batch = store.get(conn, batch_id)
        if batch is None:
            return []
        if batch.status == BatchStatus.STARTED.value and chunks == 0:
            return self._after_chunk(batch_id)
        # A few workers per batch, no more: each re-queues itself behind other batches' work,
        # so a small batch is never stuck behind all of a large one (fairness).
        parallel = max(1, min(chunks, self.settings.worker_threads))
        return [FollowUp(Step.WORK, batch_id)] * parallel

    def _plan_elsewhere(self, batch_id: str, chunk_size: int) -> list[ChunkRange] | None:
        """A large batch's chunks as a helper planned them: reading a million operations
        takes seconds of this process's interpreter, which serves the API meanwhile."""
        if self.preparer is None:
            return None
        with self.database.read() as conn:
            batch = self.store.get(conn, batch_id)
        if batch is None or batch.total_operations <= chunk_size:
            return None  # one chunk: nothing to read
        return self.preparer.plan(batch_id, chunk_size)

    # --- work ----------------------------------------------------------------------------

    def work(self, batch_id: str) -> list[FollowUp]:
        """Claim one chunk of the batch, run it, and say what comes next."""
        settings, store = self.settings, self.store
        with self.database.write() as conn:
            claim = store.claim_chunk(conn, batch_id, settings.lease_seconds)
            batch = store.get(conn, batch_id) if claim else None
            account = store.account_of(conn, batch.account_pk) if batch else None
        if claim is None or batch is None or account is None:
            return self._after_chunk(batch_id)
        clock = store.clock
        sliced_at = clock.monotonic() + settings.work_slice_seconds
        size = self._group_sizes.get(batch_id, settings.group_size)
        start = claim.next_seq
        try:
            while start < claim.stop_seq:
                if start > claim.next_seq and clock.monotonic() >= sliced_at:
                    # Time's up: hand the chunk back and queue behind other batches' work;
                    # the next claim resumes it from its cursor (where this group starts).
                    self._release(claim)
                    return [FollowUp(Step.WORK, batch_id)]
                stop, prepared = self._next_group(
                    account, batch.api_root, claim, start, size, batch.total_operations
                )
                with self.database.writer.connect() as conn:
                    transaction = conn.begin()
                    # Timed from here: on SQLite, BEGIN IMMEDIATE above waited for the lock.
                    began = clock.monotonic()
                    try:
                        outcome = run_group(
                            conn, store, self.routes, account, claim, start, stop,
                            api_root=batch.api_root, page_size=settings.page_size,
                            lease_seconds=settings.lease_seconds, hooks=self.hooks,
                            max_result_bytes=settings.max_result_bytes, prepared=prepared,
                        )  # fmt: skip
                    except BatchNotRunning:
                        # Canceled (or deleted) while this group ran: none of it happened.
                        transaction.rollback()
                        log.info(
                            "batch %s chunk %s: no longer running, stopping", batch_id, claim.seq
                        )
                        return []
                    except BaseException:
                        transaction.rollback()
                        raise
                    if not outcome.committed:
                        transaction.rollback()
                        log.info("batch %s chunk %s: claim lost, stopping", batch_id, claim.seq)
                        return []
                    transaction.commit()
                    held = clock.monotonic() - began
                    self.hooks.after_commit(account, batch_id, outcome.ran)
                if self.database.is_sqlite:
                    # Only SQLite's one write lock makes everyone wait for a group; on
                    # PostgreSQL small groups only cost round trips (bench.scale: 2,371
                    # ops/s with them, 2,981 with whole groups).
                    size = next_group_size(
                        stop - start, held, settings.group_size, settings.group_hold_seconds
                    )
                start = stop
                if len(self._group_sizes) > 1_000:
                    self._group_sizes.clear()  # batches long finished: start them afresh
                self._group_sizes[batch_id] = size
        except BaseException:
            # The failed group rolled back whole; hand the chunk back now, so the broker's
            # retry resumes it from the last commit instead of waiting out the lease (and
            # then a sweep) with the batch stuck in `started`.
            self._release(claim)
            raise
        # One write says both whether to go on and, after the last chunk, that the batch
        # is finalizing: a read first (is there more?) cost the seed's one chunk ~1 ms.
        return self._after_chunk(batch_id)

    def _next_group(
        self, account: Account, api_root: str, claim: Claim, start: int, size: int, total: int
    ) -> tuple[int, PreparedGroup | None]:
        """Where the group at `start` stops, and the group as a helper prepared it, if one did;
        the group after it goes to a helper meanwhile, to be ready when the writer is."""
        preparer = self.preparer
        if preparer is None or self.hooks.intercepts(account):
            return min(start + size, claim.stop_seq), None
        key = (claim.batch_id, claim.seq)
        ahead = self._ahead.pop(key, None)
        future: Future[PreparedGroup | None] | None
        if ahead is not None and ahead.start == start:
            stop, future = ahead.stop, ahead.future
        else:
            # Nothing prepared for this group (a chunk's first). A batch of one chunk is
            # quickest with the writer running it itself while a helper prepares the next
            # group, rather than both taking turns; beside other chunks' work, a helper
            # prepares it while this process writes theirs.
            stop = min(start + size, claim.stop_seq)
            alone = start == 0 and claim.stop_seq >= total
            future = (
                None if alone else preparer.prepare(account, api_root, claim.batch_id, start, stop)
            )
        if stop < claim.stop_seq:
            after = min(stop + size, claim.stop_seq)
            upcoming = preparer.prepare(account, api_root, claim.batch_id, stop, after)
            if upcoming is not None:
                if len(self._ahead) > 1_000:
                    self._ahead.clear()  # chunks long finished or taken over
                self._ahead[key] = _Ahead(stop, after, upcoming)
        return stop, preparer.result(future)

    def _release(self, claim: Claim) -> None:
        try:
            with self.database.write() as conn:
                self.store.release_claim(conn, claim)
        except Exception:
            # The lease expires on its own; the original error is the one to report.
            log.exception("batch %s chunk %s: could not release", claim.batch_id, claim.seq)

    def _after_chunk(self, batch_id: str, workers: int = 1) -> list[FollowUp]:
        with self.database.write() as conn:
            remaining, claimable = self.store.chunk_progress(conn, batch_id)
            if remaining:
                # Chunks a preprocess planned after a cancel stay queued for good: no worker
                # may be sent for them (nor could one claim them).
                running = self.store.status_of(conn, batch_id) is BatchStatus.STARTED
                return [FollowUp(Step.WORK, batch_id)] * min(claimable, workers) if running else []
            moved = self.store.move(conn, batch_id, BatchStatus.STARTED, BatchStatus.FINALIZING)
        return [FollowUp(Step.FINALIZE, batch_id)] if moved else []

    # --- finalize ------------------------------------------------------------------------

    def finalize(self, batch_id: str) -> list[FollowUp]:
        key = f"archives/{archive_name(batch_id)}"
        # A second finalizer can run beside the first (the sweep re-sends a message that
        # looks lost; a broker redelivers). Reading the status and the results in one
        # snapshot makes that harmless: result rows are dropped only after `finish`, so a
        # finalizer either sees the batch finished and stops, or sees every result and
        # writes the same archive under the same key.
        store = self.store
        with self.database.snapshot() as conn:
            batch = store.get(conn, batch_id)
            if batch is None or batch.status != BatchStatus.FINALIZING:
                return []
            with self.blobs.writer(key) as out:
                summary = write_archive(
                    self._keep_alive(batch_id, store.iter_results(conn, batch_id)),
                    out,
                    results_per_file=self.settings.results_per_file,
                )
        with self.database.write() as conn:
            finished = store.finish(conn, batch_id, key)
            # The outbox rows commit with the status: a finished batch always gets its webhooks.
            deliveries = self._enqueue_webhooks(conn, batch_id) if finished else []
            gone = not finished and store.get(conn, batch_id) is None
        if not finished:
            # Deleted meanwhile: nobody else will remove the archive. Finished by another
            # finalizer: the archive is that one's too, and must stay.
            if gone:
                self.blobs.delete(key)
            return []
        log.info(
            "batch %s finished: %d results (%d errored) in %d file(s)",
            batch_id, summary.results, summary.errored, summary.files,
        )  # fmt: skip
        # The operation and result rows stay: the operations view, the NDJSON results and a
        # retry read them until the batch is deleted or purged.
        return [FollowUp(Step.DELIVER, delivery_id) for delivery_id in deliveries]

    def cleanup(self, batch_id: str) -> list[FollowUp]:
        """Finish dropping the rows of a batch that finished before rows were kept (an
        upgrade from before migration 0007 mid-drop); a no-op for any other batch."""
        with self.database.read() as conn:
            state = self.store.cleanup_state(conn, batch_id)
        if state is None or state.status is not BatchStatus.FINISHED or not state.rows_pending:
            return []
        self._drop_batch_rows(batch_id)
        with self.database.write() as conn:
            self.store.rows_dropped(conn, batch_id)
        return []

    def _keep_alive(self, batch_id: str, records: Iterator[ResultFields]) -> Iterator[ResultFields]:
        """Move the batch row while a long archive is written.

        The sweep takes a finalizing batch whose row has not moved for `sweep_idle_seconds`
        for one whose message was lost; without this, a million-result archive would get a
        second (and third...) finalizer doing the same work beside it.
        """
        every = max(self.settings.sweep_idle_seconds / 3, 1.0)
        clock = self.store.clock
        last = clock.monotonic()
        for count, record in enumerate(records, 1):
            if count % 1_000 == 0 and clock.monotonic() - last > every:
                with self.database.write() as conn:
                    self.store.touch(conn, batch_id, BatchStatus.FINALIZING)
                last = clock.monotonic()
            yield record

    def _enqueue_webhooks(self, conn: Connection, batch_id: str) -> list[str]:
        batch = self.store.get(conn, batch_id)
        assert batch is not None
        rendered = render_batch(batch, batch.api_root, "")
        snapshot = CompletedBatch(
            id=batch.id,
            status=batch.status,
            total_operations=batch.total_operations,
            finished_operations=batch.finished_operations,
            errored_operations=batch.errored_operations,
            submitted_at=batch.submitted_at,
            completed_at=batch.completed_at,
            links=rendered["_links"],
        )
        return self.webhook_store.enqueue_completed(conn, batch.account_pk, snapshot)

    # --- removal -------------------------------------------------------------------------

    def delete(self, batch_id: str) -> None:
        """Stop the batch and remove everything it has; in-flight groups fail their CAS.

        The batch row goes last, so a crash half-way leaves it (hidden, `deleting`) for the
        sweep to finish the job, never rows that nothing points to.
        """
        with self.database.write() as conn:
            key = self.store.mark_deleting(conn, batch_id)
        if key:
            self.blobs.delete(key)
        self._drop_batch_rows(batch_id)
        with self.database.write() as conn:
            self.store.remove_row(conn, batch_id)

    def _drop_batch_rows(self, batch_id: str) -> None:
        # Small transactions: a million-row delete must not hold the SQLite writer for seconds.
        for table in ("operations", "results"):
            while True:
                with self.database.write() as conn:
                    if self.store.delete_page(conn, table, batch_id, 5_000) == 0:
                        break

    def discard_ingest(self, batch_id: str) -> None:
        self.delete(batch_id)

    # --- the scheduler's sweep -----------------------------------------------------------

    def sweep(self, *, idle_seconds: float) -> list[FollowUp]:
        """Work whose message may have been lost: everything in flight that has not moved."""
        with self.database.read() as conn:
            stalled = self.store.stalled(conn, idle_seconds)
        follow_ups: list[FollowUp] = []
        for batch_id, status in stalled:
            step = SWEEP_STEP[status]
            if step is Step.WORK:
                # As many workers as preprocess gave the batch: one message would leave it on
                # a single worker for the rest of its run after every restart.
                workers = self.settings.worker_threads
                follow_ups.extend(self._after_chunk(batch_id, workers=workers))
            else:
                follow_ups.append(FollowUp(step, batch_id))
        return follow_ups

    def purge_expired(self) -> int:
        """Delete batches past retention, and uploads abandoned mid-body; returns how many."""
        with self.database.read() as conn:
            expired = self.store.expired(conn, self.settings.retention_seconds)
            stale = self.store.stale_ingests(conn, self.settings.stale_ingest_seconds)
        for batch_id in [*expired, *stale]:
            self.delete(batch_id)
        with self.database.write() as conn:
            self.webhook_store.purge_ended(conn, self.settings.retention_seconds)
        while True:
            with self.database.write() as conn:
                if not self.idempotency_keys.purge_expired(conn):
                    break
        return len(expired) + len(stale)

    def release_leases(self) -> int:
        with self.database.write() as conn:
            return self.store.release_all_leases(conn)

    def discard_all_ingests(self) -> int:
        """At start-up of the one-process server, no ingest can still be running."""
        with self.database.read() as conn:
            stale = self.store.stale_ingests(conn, idle_seconds=-1)
        for batch_id in stale:
            self.delete(batch_id)
        return len(stale)

    def finish_cleanups(self, *, idle_seconds: float) -> int:
        """Finish deletes and row drops that a crash interrupted; returns how many."""
        with self.database.read() as conn:
            pending = self.store.pending_cleanups(conn, idle_seconds)
        for batch_id, status in pending:
            if status is BatchStatus.DELETING:
                self.delete(batch_id)
            else:
                self.cleanup(batch_id)
        return len(pending)


@dataclass(frozen=True, slots=True)
class _Ahead:
    start: int
    stop: int
    future: Future[PreparedGroup | None]
