"""The batch life cycle: preprocess, work through chunks, finalize, delete, sweep.

Each step is idempotent and guarded by a compare-and-set on the database rows, and answers
which messages should follow it. The runtime turns those into broker messages; the database
stays the truth (ARCHITECTURE.md decision 1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, select

from conveyor.batches import store, webhook_store
from conveyor.batches.executor import run_group
from conveyor.batches.render import render_batch
from conveyor.domain.archive import ResultRecord, archive_name, write_archive
from conveyor.domain.batch_status import BatchStatus
from conveyor.domain.chunking import plan_groups
from conveyor.domain.webhook_payload import CompletedBatch
from conveyor.marketing.routing import Account, RouteTable
from conveyor.settings import BatchSettings
from conveyor.storage.blobs import BlobStore
from conveyor.storage.database import Database
from conveyor.storage.tables import batches

log = logging.getLogger("conveyor.batches")


class Step(StrEnum):
    PREPROCESS = "preprocess"
    WORK = "work"
    FINALIZE = "finalize"
    CLEANUP = "cleanup"
    DELIVER = "deliver"


@dataclass(frozen=True, slots=True)
class FollowUp:
    step: Step
    # A batch id, or a webhook delivery id for DELIVER.
    target_id: str
    delay_seconds: float = 0.0


@dataclass
class BatchEngine:
    database: Database
    routes: RouteTable
    blobs: BlobStore
    settings: BatchSettings

    # --- preprocess ----------------------------------------------------------------------

    def preprocess(self, batch_id: str) -> list[FollowUp]:
        with self.database.write() as conn:
            store.move_status(
                conn, batch_id, BatchStatus.PENDING.value, BatchStatus.PREPROCESSING.value
            )
        with self.database.write() as conn:
            chunks = store.plan_and_start(conn, batch_id, self.settings.chunk_size)
            batch = store.get_batch(conn, batch_id)
        if batch is None:
            return []
        if batch.status == BatchStatus.STARTED.value and chunks == 0:
            return self._after_chunk(batch_id)
        # A few workers per batch, no more: each re-queues itself behind other batches' work,
        # so a small batch is never stuck behind all of a large one (fairness).
        parallel = max(1, min(chunks, self.settings.worker_threads))
        return [FollowUp(Step.WORK, batch_id)] * parallel

    # --- work ----------------------------------------------------------------------------

    def work(self, batch_id: str) -> list[FollowUp]:
        """Claim one chunk of the batch, run it, and say what comes next."""
        settings = self.settings
        with self.database.write() as conn:
            claim = store.claim_chunk(conn, batch_id, settings.lease_seconds)
            batch = store.get_batch(conn, batch_id) if claim else None
            account = Account(*store.account_of_batch(conn, batch.account_pk)) if batch else None
        if claim is None or batch is None or account is None:
            return self._after_chunk(batch_id)
        try:
            for group in plan_groups(claim.next_seq, claim.stop_seq, settings.group_size):
                with self.database.writer.connect() as conn:
                    transaction = conn.begin()
                    try:
                        outcome = run_group(
                            conn, self.routes, account, claim, group.start, group.stop,
                            api_root=batch.api_root, page_size=settings.page_size,
                            lease_seconds=settings.lease_seconds,
                        )  # fmt: skip
                    except BaseException:
                        transaction.rollback()
                        raise
                    if not outcome.committed:
                        transaction.rollback()
                        log.info("batch %s chunk %s: claim lost, stopping", batch_id, claim.seq)
                        return []
                    transaction.commit()
        except BaseException:
            # The failed group rolled back whole; hand the chunk back now, so the broker's
            # retry resumes it from the last commit instead of waiting out the lease (and
            # then a sweep) with the batch stuck in `started`.
            self._release(claim)
            raise
        return (
            [FollowUp(Step.WORK, batch_id)]
            if self._has_more(batch_id)
            else (self._after_chunk(batch_id))
        )

    def _release(self, claim: store.Claim) -> None:
        try:
            with self.database.write() as conn:
                store.release_claim(conn, claim)
        except Exception:
            # The lease expires on its own; the original error is the one to report.
            log.exception("batch %s chunk %s: could not release", claim.batch_id, claim.seq)

    def _has_more(self, batch_id: str) -> bool:
        with self.database.read() as conn:
            _, claimable = store.chunk_progress(conn, batch_id)
        return claimable > 0

    def _after_chunk(self, batch_id: str, workers: int = 1) -> list[FollowUp]:
        with self.database.write() as conn:
            remaining, claimable = store.chunk_progress(conn, batch_id)
            if remaining:
                return [FollowUp(Step.WORK, batch_id)] * min(claimable, workers)
            moved = store.move_status(
                conn, batch_id, BatchStatus.STARTED.value, BatchStatus.FINALIZING.value
            )
        return [FollowUp(Step.FINALIZE, batch_id)] if moved else []

    # --- finalize ------------------------------------------------------------------------

    def finalize(self, batch_id: str) -> list[FollowUp]:
        key = f"archives/{archive_name(batch_id)}"
        # A second finalizer can run beside the first (the sweep re-sends a message that
        # looks lost; a broker redelivers). Reading the status and the results in one
        # snapshot makes that harmless: result rows are dropped only after `finish`, so a
        # finalizer either sees the batch finished and stops, or sees every result and
        # writes the same archive under the same key.
        with self._snapshot() as conn:
            batch = store.get_batch(conn, batch_id)
            if batch is None or batch.status != BatchStatus.FINALIZING.value:
                return []
            with self.blobs.writer(key) as out:
                summary = write_archive(
                    self._keep_alive(batch_id, _records(store.iter_results(conn, batch_id))),
                    out,
                    results_per_file=self.settings.results_per_file,
                )
        with self.database.write() as conn:
            finished = store.finish(conn, batch_id, key)
            # The outbox rows commit with the status: a finished batch always gets its webhooks.
            deliveries = self._enqueue_webhooks(conn, batch_id) if finished else []
            gone = not finished and store.get_batch(conn, batch_id) is None
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
        # Webhooks go out first; the rows, which the archive now holds, are dropped after, in
        # a step of their own (`rows_pending` keeps it from being forgotten).
        return [
            *(FollowUp(Step.DELIVER, delivery_id) for delivery_id in deliveries),
            FollowUp(Step.CLEANUP, batch_id),
        ]

    def cleanup(self, batch_id: str) -> list[FollowUp]:
        """Drop a finished batch's operation and result rows (no-op for any other batch)."""
        with self.database.read() as conn:
            state = conn.execute(
                select(batches.c.status, batches.c.rows_pending).where(batches.c.id == batch_id)
            ).first()
        if state is None or state.status != BatchStatus.FINISHED.value or not state.rows_pending:
            return []
        self._drop_batch_rows(batch_id)
        with self.database.write() as conn:
            store.rows_dropped(conn, batch_id)
        return []

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """A read transaction whose statements all see one snapshot."""
        with self.database.reader.connect() as conn:
            if not self.database.is_sqlite:
                # SQLite's read transaction is one snapshot already; PostgreSQL's default
                # (read committed) takes a new one for every statement.
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def _keep_alive(self, batch_id: str, records: Iterator[ResultRecord]) -> Iterator[ResultRecord]:
        """Move the batch row while a long archive is written.

        The sweep takes a finalizing batch whose row has not moved for `sweep_idle_seconds`
        for one whose message was lost; without this, a million-result archive would get a
        second (and third...) finalizer doing the same work beside it.
        """
        every = max(self.settings.sweep_idle_seconds / 3, 1.0)
        last = time.monotonic()
        for count, record in enumerate(records, 1):
            if count % 1_000 == 0 and time.monotonic() - last > every:
                with self.database.write() as conn:
                    store.touch(conn, batch_id, BatchStatus.FINALIZING.value)
                last = time.monotonic()
            yield record

    def _enqueue_webhooks(self, conn: Connection, batch_id: str) -> list[str]:
        batch = store.get_batch(conn, batch_id)
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
        return webhook_store.enqueue_completed(conn, batch.account_pk, snapshot)

    # --- removal -------------------------------------------------------------------------

    def delete(self, batch_id: str) -> None:
        """Stop the batch and remove everything it has; in-flight groups fail their CAS.

        The batch row goes last, so a crash half-way leaves it (hidden, `deleting`) for the
        sweep to finish the job, never rows that nothing points to.
        """
        with self.database.write() as conn:
            key = store.mark_deleting(conn, batch_id)
        if key:
            self.blobs.delete(key)
        self._drop_batch_rows(batch_id)
        with self.database.write() as conn:
            store.remove_batch_row(conn, batch_id)

    def _drop_batch_rows(self, batch_id: str) -> None:
        # Small transactions: a million-row delete must not hold the SQLite writer for seconds.
        for table in ("operations", "results"):
            while True:
                with self.database.write() as conn:
                    if store.delete_page(conn, table, batch_id, 5_000) == 0:
                        break

    def discard_ingest(self, batch_id: str) -> None:
        self.delete(batch_id)

    # --- the scheduler's sweep -----------------------------------------------------------

    def sweep(self, *, idle_seconds: float, now: float | None = None) -> list[FollowUp]:
        """Work whose message may have been lost: everything in flight that has not moved."""
        now = time.time() if now is None else now
        with self.database.read() as conn:
            candidates = store.sweep_candidates(conn, now - idle_seconds)
        follow_ups: list[FollowUp] = []
        for batch_id, status in candidates:
            if status in (BatchStatus.PENDING.value, BatchStatus.PREPROCESSING.value):
                follow_ups.append(FollowUp(Step.PREPROCESS, batch_id))
            elif status == BatchStatus.STARTED.value:
                # As many workers as preprocess gave the batch: one message would leave it on
                # a single worker for the rest of its run after every restart.
                workers = self.settings.worker_threads
                follow_ups.extend(self._after_chunk(batch_id, workers=workers))
            elif status == BatchStatus.FINALIZING.value:
                follow_ups.append(FollowUp(Step.FINALIZE, batch_id))
        return follow_ups

    def purge_expired(self, *, now: float | None = None) -> int:
        now = time.time() if now is None else now
        purged = 0
        with self.database.read() as conn:
            expired = store.expired_batch_ids(conn, now - self.settings.retention_seconds)
            stale = store.stale_ingests(conn, now - self.settings.stale_ingest_seconds)
        for batch_id in [*expired, *stale]:
            self.delete(batch_id)
            purged += 1
        return purged

    def release_leases(self) -> int:
        with self.database.write() as conn:
            return store.release_all_leases(conn)

    def discard_all_ingests(self) -> int:
        """At start-up of the one-process server, no ingest can still be running."""
        with self.database.read() as conn:
            stale = store.stale_ingests(conn, time.time() + 1)
        for batch_id in stale:
            self.delete(batch_id)
        return len(stale)

    def finish_cleanups(self, *, idle_seconds: float, now: float | None = None) -> int:
        """Finish deletes and row drops that a crash interrupted; returns how many."""
        now = time.time() if now is None else now
        with self.database.read() as conn:
            pending = store.pending_cleanups(conn, now - idle_seconds)
        for batch_id in pending:
            with self.database.read() as conn:
                batch = conn.execute(
                    select(batches.c.status).where(batches.c.id == batch_id)
                ).scalar()
            if batch == store.DELETING:
                self.delete(batch_id)
            else:
                self.cleanup(batch_id)
        return len(pending)


def _records(rows: Iterator[tuple[int, str | None, str]]) -> Iterator[ResultRecord]:
    for status_code, operation_id, response in rows:
        yield ResultRecord(status_code, operation_id, response)
