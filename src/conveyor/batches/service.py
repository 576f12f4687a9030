"""The Batch API as a service: submit (with its quotas and idempotency keys), read, list,
delete, archive, and Conveyor's own steering: retry the failures, cancel.

No HTTP here: the endpoints in `conveyor.http` call these methods and turn what they raise
into problem documents. Submission consumes the body as an async stream of bytes and stores
it in pages; everything else is a short blocking call.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO, TypeVar

import anyio
import anyio.abc
import orjson

from conveyor.batches.engine import BatchEngine
from conveyor.batches.results_view import results_dropped
from conveyor.domain import problems
from conveyor.domain.accounts import Account
from conveyor.domain.idempotency import HEADER, BodyDigest
from conveyor.domain.operation_limits import OperationLimits, check_operation_size
from conveyor.domain.operations import (
    InvalidBatchBody,
    MalformedJson,
    Operation,
    aiter_operation_lists,
)
from conveyor.domain.problems import Problem
from conveyor.domain.signing import DownloadCheck, build_download_url, verify_download
from conveyor.domain.states import BatchStatus
from conveyor.settings import BatchSettings
from conveyor.storage.batch_results import BatchResultStore
from conveyor.storage.batches import BatchRow, BatchStore, StoredOperation
from conveyor.storage.blobs import BlobStore
from conveyor.storage.database import Database
from conveyor.storage.idempotency import IdempotencyStore, StoredKey
from conveyor.storage.webhooks import WebhookStore

log = logging.getLogger("conveyor.batches")
T = TypeVar("T")


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is larger than {limit} bytes")
        self.limit = limit


class UploadAbandoned(Exception):
    """The scheduler took the upload for abandoned and removed what it had stored."""


@dataclass(frozen=True, slots=True)
class Archive:
    key: str
    size: int


@dataclass(frozen=True, slots=True)
class Submission:
    batch: BatchRow
    # The answer repeats an earlier submit under the same idempotency key: nothing was made.
    replayed: bool = False


def key_reused() -> Problem:
    return Problem(
        422,
        "Idempotency Key Reused",
        f"This {HEADER} was used in the last 24 hours with another request body. "
        "Send a new key for a new batch, or the same body to get the batch it made.",
    )


@dataclass
class BatchService:
    """Submission with Mailchimp's limits (500 unstarted batches, 500 pending webhook
    events), reads that mint fresh signed download URLs, delete, and archive access."""

    database: Database
    store: BatchStore
    webhook_store: WebhookStore
    engine: BatchEngine
    blobs: BlobStore
    secret: bytes
    settings: BatchSettings
    results: BatchResultStore
    idempotency_keys: IdempotencyStore

    # --- submit --------------------------------------------------------------------------

    async def submit(
        self,
        account: Account,
        body: AsyncIterator[bytes],
        api_root: str,
        *,
        idempotency_key: str | None = None,
    ) -> Submission:
        """Store a whole batch and make it visible as `pending`; nothing stays if it fails.

        With an idempotency key, a body the key was already used with in the last 24 hours
        answers the batch it made (`replayed`), and another body raises `key_reused`. Two
        submits racing under one key each store their body; the first to publish wins and
        the other drops its copy and answers the winner's batch.

        Raises `Problem` for a quota, `BodyTooLarge`, `UploadAbandoned`, the parser's
        `InvalidBatchBody` family, or whatever the body stream raised.
        """
        settings = self.settings
        capped = _capped(body, settings.max_body_bytes)
        if idempotency_key is not None:
            held = await self._read(
                lambda conn: self.idempotency_keys.find(conn, account.pk, idempotency_key)
            )
            if held is not None:
                digest = BodyDigest()
                async for piece in capped:
                    digest.update(piece)
                return await self._replay(account, held, digest.hexdigest())
        digest = BodyDigest()
        batch_id: str = await self._write(lambda conn: self._reserve(conn, account, api_root))
        try:
            # The digest is what a key is held to; without a key nothing reads it.
            stream = capped if idempotency_key is None else _hashed(capped, digest)
            parsed = aiter_operation_lists(stream, max_operations=settings.max_operations)
            limits = OperationLimits(
                body_bytes=settings.max_operation_body_bytes,
                operation_id_chars=settings.max_operation_id_chars,
                path_chars=settings.max_operation_path_chars,
            )
            stored = await self._store_pages(batch_id, _storable(parsed, limits))
            total = stored.total

            def publish(conn: Any) -> StoredKey | BatchRow:
                # The last page goes in with the publish, and the answer is read there too:
                # a batch of one page (the seed's 1,000 adds) is then stored in one write
                # after its reserve, instead of a write, a write and a read.
                if stored.tail:
                    self.store.insert_operations(conn, batch_id, stored.tail_seq, stored.tail)
                if idempotency_key is not None:
                    holder = self.idempotency_keys.claim(
                        conn, account.pk, idempotency_key, digest.hexdigest(), batch_id
                    )
                    if holder is not None:
                        return holder
                if not self.store.publish(conn, batch_id, total):
                    raise UploadAbandoned(batch_id)
                batch = self.store.get(conn, batch_id, account.pk)
                assert batch is not None
                return batch

            published = await self._write(publish)
        except BaseException:
            # Nothing half-stored survives: the batch was never visible, now it is gone.
            await self._discard(batch_id)
            raise
        if isinstance(published, StoredKey):
            # Another request under the same key published first: its batch is the answer.
            await self._discard(batch_id)
            return await self._replay(account, published, digest.hexdigest())
        log.info("batch %s accepted: %d operations", batch_id, total)
        return Submission(published)

    def _reserve(
        self, conn: Any, account: Account, api_root: str, *, retry_of: str | None = None
    ) -> str:
        """A new (still invisible) batch row, if the account's quotas allow one.

        Both quotas and the new row in one transaction, one submit of the account at a time:
        concurrent submits cannot all pass a count taken before any of them inserted.
        """
        settings = self.settings
        self.store.lock_account(conn, account.pk)
        unstarted = self.store.count_unstarted(conn, account.pk, uploads=True)
        if unstarted >= settings.max_unstarted_batches:
            raise problems.too_many_requests(
                f"You have more than {settings.max_unstarted_batches} pending batches. "
                "Please wait for some to complete before adding any more batches."
            )
        if self.webhook_store.count_pending(conn, account.pk) >= settings.max_pending_webhooks:
            raise problems.too_many_requests(
                f"You have more than {settings.max_pending_webhooks} pending webhooks. "
                "Please wait for some to complete before adding any more batches."
            )
        return self.store.create_ingesting(conn, account.pk, api_root, retry_of=retry_of)

    async def _replay(self, account: Account, held: StoredKey, body_sha256: str) -> Submission:
        if held.body_sha256 != body_sha256:
            raise key_reused()
        batch = await self._read(lambda conn: self.store.get(conn, held.batch_id, account.pk))
        if batch is None:  # deleted since: the key went with it, as a retry will find
            raise problems.not_found()
        return Submission(batch, replayed=True)

    async def _discard(self, batch_id: str) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.engine.discard_ingest, batch_id)

    async def _visible(self, account: Account, batch_id: str) -> BatchRow:
        batch = await self._read(lambda conn: self.store.get(conn, batch_id, account.pk))
        assert batch is not None
        return batch

    async def _store_pages(
        self, batch_id: str, operations: AsyncIterator[list[Operation]]
    ) -> _StoredPages:
        """Store the operations in pages of `ingest_page_size`, but for the last one short of
        a page, which is handed back for the publish's transaction to write.

        Pages are written in a thread while the next ones are parsed: SQLite stores a page
        without the GIL (its rows go as JSON text, storage/raw_sql.py `BulkInsert`), so
        parsing and storing overlap instead of taking turns. One page is written at a time,
        in order, and the parser runs at most two pages ahead (memory stays three pages).
        """
        page_size = self.settings.ingest_page_size
        writer = _PageWriter(self._store_page)
        total = 0
        page: list[Operation] = []
        failure: Exception | None = None
        async with anyio.create_task_group() as tasks:
            try:
                async for arrived in operations:
                    page += arrived
                    while len(page) >= page_size:
                        await writer.start(tasks, batch_id, total, page[:page_size])
                        total += page_size
                        del page[:page_size]
                await writer.wait()
            except Exception as exc:
                # Raised below, once the page being written is done (the caller then drops
                # the batch), and as itself: a task group would wrap it in a group.
                failure = exc
        if failure is not None:
            raise failure
        return _StoredPages(total + len(page), total, page)

    def _store_page(self, batch_id: str, first_seq: int, page: list[Operation]) -> None:
        with self.database.write() as conn:
            self.store.insert_operations(conn, batch_id, first_seq, page)
        # Freed here, in the writing thread, rather than by the parsing one.
        page.clear()

    # --- reads and delete ----------------------------------------------------------------

    def get(self, account: Account, batch_id: str) -> BatchRow:
        """The account's batch, or 404: one indexed row, cheap enough for the event loop on
        SQLite in WAL mode (it never waits on a lock)."""
        batch = self.store.read_own(self.database, batch_id, account.pk)
        if batch is None:
            raise problems.not_found()
        return batch

    def find(self, account: Account, batch_id: str) -> BatchRow | None:
        """As `get`, None instead of a 404."""
        return self.store.read_own(self.database, batch_id, account.pk)

    def list_recent(self, account: Account, count: int, offset: int) -> tuple[list[BatchRow], int]:
        """The account's batches of the last `retention_seconds`, newest first."""
        with self.database.read() as conn:
            return self.store.list_recent(
                conn, account.pk, self.settings.retention_seconds, count, offset
            )

    def delete(self, account: Account, batch_id: str) -> None:
        """Stop the batch and drop it with its results (Mailchimp's DELETE)."""
        batch = self.get(account, batch_id)
        self.engine.delete(batch.id)

    # --- steering: retry the failures, cancel --------------------------------------------

    async def retry(
        self,
        account: Account,
        batch_id: str,
        api_root: str,
        status_codes: Collection[int] | None = None,
    ) -> BatchRow:
        """A new batch of the finished batch's failed operations (only those that failed with
        one of `status_codes`, when given), in their order, with `retry_of` set."""
        source = await self._read(lambda conn: self.store.get(conn, batch_id, account.pk))
        if source is None:
            raise problems.not_found()
        if not source.rows_kept:
            raise results_dropped(source.id)
        if source.status != BatchStatus.FINISHED:
            raise Problem(
                400,
                "Invalid Action",
                f"Batch {source.id} is {source.status}: only a finished batch can be retried.",
            )
        nothing_failed = _nothing_failed(source.id, status_codes)
        if not await self._read(
            lambda conn: self.results.has_failures(conn, source.id, status_codes)
        ):
            raise nothing_failed
        new_id: str = await self._write(
            lambda conn: self._reserve(conn, account, api_root, retry_of=source.id)
        )
        try:
            total, after = 0, -1
            page_size = self.settings.ingest_page_size
            while True:
                failed = await self._read(
                    partial(
                        self.results.failed_operations,
                        batch_id=source.id,
                        after_seq=after,
                        limit=page_size,
                        status_codes=status_codes,
                    )
                )
                if not failed:
                    break
                resubmitted = [_resubmitted(op) for op in failed]
                await anyio.to_thread.run_sync(self._store_page, new_id, total, resubmitted)
                total += len(failed)
                after = failed[-1].seq
            if total == 0:  # the source was deleted meanwhile
                raise nothing_failed
            if not await self._write(lambda conn: self.store.publish(conn, new_id, total)):
                raise UploadAbandoned(new_id)
        except BaseException:
            await self._discard(new_id)
            raise
        log.info("batch %s retries %d failed operation(s) of %s", new_id, total, source.id)
        return await self._visible(account, new_id)

    def cancel(self, account: Account, batch_id: str) -> tuple[BatchRow, bool]:
        """Stop the batch where it is: operations not yet run never run, and it goes on to
        `finished` with an archive of what did run. Answers the batch and whether this call
        canceled it (false: it was canceled already; the caller has nothing to start)."""
        batch = self.get(account, batch_id)
        if batch.canceled:
            return batch, False
        with self.database.write() as conn:
            moved = self.store.cancel(conn, batch.id)
        batch = self.get(account, batch_id)
        if moved or batch.canceled:
            if moved:
                log.info(
                    "batch %s canceled after %d operations", batch.id, batch.finished_operations
                )
            return batch, moved
        raise Problem(
            400,
            "Invalid Action",
            f"Batch {batch.id} is {batch.status}: every operation has run already, "
            "so there is nothing left to cancel.",
        )

    # --- results archive -----------------------------------------------------------------

    def download_url(self, batch: BatchRow, server_root: str) -> str:
        """A fresh signed URL of the archive, or "" until the batch is finished."""
        if batch.status != BatchStatus.FINISHED or not batch.archive_key:
            return ""
        return build_download_url(
            server_root,
            self.secret,
            batch.id,
            self.store.clock.now(),
            self.settings.url_ttl_seconds,
        )

    def check_download(self, batch_id: str, expires: str, signature: str) -> Archive:
        """The archive a signed URL names; 403 for a bad or expired one, 404 when gone."""
        check = verify_download(self.secret, batch_id, expires, signature, self.store.clock.now())
        if check is not DownloadCheck.OK:
            detail = (
                "This download link has expired. Read the batch again for a fresh link."
                if check is DownloadCheck.EXPIRED
                else "This download link is not valid."
            )
            raise Problem(403, "Forbidden", detail)
        with self.database.read() as conn:
            batch = self.store.get(conn, batch_id)
        if batch is None or not batch.archive_key:
            raise problems.not_found()
        size = self.blobs.size(batch.archive_key)
        if size is None:
            raise problems.not_found()
        return Archive(batch.archive_key, size)

    def open_archive(self, archive: Archive) -> BinaryIO:
        return self.blobs.open(archive.key)

    # --- database calls off the event loop -----------------------------------------------

    async def _read(self, query: Callable[[Any], T]) -> T:
        def run() -> T:
            with self.database.read() as conn:
                return query(conn)

        return await anyio.to_thread.run_sync(run)

    async def _write(self, statement: Callable[[Any], T]) -> T:
        def run() -> T:
            with self.database.write() as conn:
                return statement(conn)

        return await anyio.to_thread.run_sync(run)


def _nothing_failed(batch_id: str, status_codes: Collection[int] | None) -> Problem:
    which = ""
    if status_codes:
        which = " with status code " + " or ".join(str(code) for code in sorted(status_codes))
    return Problem(
        400, "Invalid Action", f"Batch {batch_id} has no failed operations{which} to retry."
    )


def _resubmitted(stored: StoredOperation) -> Operation:
    params = orjson.loads(stored.params) if stored.params else {}
    return Operation(stored.method, stored.path, params, stored.body, stored.operation_id)


async def _hashed(stream: AsyncIterator[bytes], digest: BodyDigest) -> AsyncIterator[bytes]:
    async for chunk in stream:
        digest.update(chunk)
        yield chunk


@dataclass(frozen=True, slots=True)
class _StoredPages:
    total: int  # operations in the body
    tail_seq: int  # where the tail starts
    tail: list[Operation]  # the last operations, short of a page: not stored yet


class _PageWriter:
    """Writes pages in a worker thread, one after another, beside the caller's parsing.

    Up to `depth` pages wait or are being written, so that a page that parses faster than
    the one before it stores does not stop the parser: with one page in flight, a 1M body
    spent ~5 s of its ~20 s with the writer idle between pages (docs/benchmarks.md,
    "Ingest: rows stored without the GIL"). A failed write is kept and raised to the caller
    at its next `start` or `wait`, never inside the task group, so the caller's own errors (a
    bad body) come out unwrapped; the pages after a failed one are not written.
    """

    def __init__(
        self, store: Callable[[str, int, list[Operation]], None], *, depth: int = 2
    ) -> None:
        self._store = store
        self._depth = depth
        self._unfinished: deque[anyio.Event] = deque()
        self._failure: Exception | None = None

    async def start(
        self, tasks: anyio.abc.TaskGroup, batch_id: str, first_seq: int, page: list[Operation]
    ) -> None:
        unfinished = self._unfinished
        while unfinished and (unfinished[0].is_set() or len(unfinished) >= self._depth):
            await unfinished.popleft().wait()
        self._raise_failure()
        previous = unfinished[-1] if unfinished else None
        done = anyio.Event()
        unfinished.append(done)

        async def write() -> None:
            try:
                if previous is not None:
                    await previous.wait()
                if self._failure is None:
                    await anyio.to_thread.run_sync(self._store, batch_id, first_seq, page)
            except Exception as exc:
                self._failure = exc
            finally:
                done.set()

        tasks.start_soon(write)

    async def wait(self) -> None:
        while self._unfinished:
            await self._unfinished.popleft().wait()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure


async def _storable(
    batches: AsyncIterator[list[Operation]], limits: OperationLimits
) -> AsyncIterator[list[Operation]]:
    """The operations, refusing text that neither database can store and operations larger
    than one request may be.

    JSON may escape a lone surrogate (`"\\udc00"`) or NUL (`"\\u0000"`); neither is a
    character UTF-8 can carry into SQLite or PostgreSQL (whose text has no NUL at all). The
    parser's C backend fails to decode the former; the rest is checked here, at the storage
    boundary, so that both databases refuse the same bodies.
    """
    index = 0
    while True:
        try:
            operations = await anext(batches)
        except StopAsyncIteration:
            return
        except UnicodeDecodeError:
            raise MalformedJson(_UNSTORABLE_JSON) from None
        for operation in operations:
            if not _plainly_storable(operation, limits):
                _check_storable(operation, index)
                check_operation_size(operation, index, limits)
            index += 1
        yield operations


_UNSTORABLE_JSON = (
    "The request body is not valid JSON: it escapes a lone surrogate (such as \\udc00), "
    "which is not a character."
)


def _plainly_storable(operation: Operation, limits: OperationLimits) -> bool:
    """True for the usual operation, which both checks below would pass: ASCII text without
    NUL (whose length in characters is its length in bytes) within the limits, no params.
    `isascii` reads a flag CPython keeps and `in` is a memchr, so this costs ~0.4 µs where
    the two checks cost ~1.1 µs, of the ~10 µs an operation of a large body costs the event
    loop; anything else is decided by the two checks."""
    body = operation.body
    path = operation.path
    operation_id = operation.operation_id
    return (
        not operation.params
        and path.isascii()
        and "\x00" not in path
        and len(path) <= limits.path_chars
        and (
            body is None
            or (body.isascii() and "\x00" not in body and len(body) <= limits.body_bytes)
        )
        and (
            operation_id is None
            or (
                operation_id.isascii()
                and "\x00" not in operation_id
                and len(operation_id) <= limits.operation_id_chars
            )
        )
    )


def _check_storable(operation: Operation, index: int) -> None:
    fields: list[tuple[str, str | None]] = [
        ("path", operation.path),
        ("body", operation.body),
        ("operation_id", operation.operation_id),
    ]
    # Keys first, named without themselves: a problem never echoes text it cannot encode.
    fields += [("params", key) for key in operation.params]
    fields += [(f"params.{key}", value) for key, value in operation.params.items()]
    for name, text in fields:
        reason = _unstorable(text)
        if reason is not None:
            field = f"operations[{index}].{name}"
            raise InvalidBatchBody(f"{field} {reason}", field=field, index=index)


def _unstorable(text: str | None) -> str | None:
    if text is None:
        return None
    if "\x00" in text:
        return "contains NUL (\\u0000), which cannot be stored."
    if not text.isascii():  # a flag CPython keeps: ASCII text costs nothing more here
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate, which is not a character and cannot be stored."
    return None


async def _capped(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge(limit)
        if chunk:
            yield chunk
