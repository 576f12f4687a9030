"""The Batch API as a service: submit (with its quotas), read, list, delete, archive.

No HTTP here: the endpoints in `conveyor.http` call these methods and turn what they raise
into problem documents. Submission consumes the body as an async stream of bytes and stores
it in pages; everything else is a short blocking call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

import anyio

from conveyor.batches.engine import BatchEngine
from conveyor.domain import problems
from conveyor.domain.accounts import Account
from conveyor.domain.operations import Operation, aiter_operations
from conveyor.domain.problems import Problem
from conveyor.domain.signing import DownloadCheck, build_download_url, verify_download
from conveyor.domain.states import BatchStatus
from conveyor.settings import BatchSettings
from conveyor.storage.batches import BatchRow, BatchStore
from conveyor.storage.blobs import BlobStore
from conveyor.storage.database import Database
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

    # --- submit --------------------------------------------------------------------------

    async def submit(self, account: Account, body: AsyncIterator[bytes], api_root: str) -> BatchRow:
        """Store a whole batch and make it visible as `pending`; nothing stays if it fails.

        Raises `Problem` for a quota, `BodyTooLarge`, `UploadAbandoned`, the parser's
        `InvalidBatchBody` family, or whatever the body stream raised.
        """
        settings = self.settings

        def reserve(conn: Any) -> str:
            # Both quotas and the new row in one transaction, one submit of the account at a
            # time: concurrent submits cannot all pass a count taken before any inserted.
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
            return self.store.create_ingesting(conn, account.pk, api_root)

        batch_id: str = await self._write(reserve)
        try:
            total = 0
            page: list[Operation] = []
            capped = _capped(body, settings.max_body_bytes)
            async for operation in aiter_operations(capped, max_operations=settings.max_operations):
                page.append(operation)
                if len(page) >= settings.ingest_page_size:
                    await self._store_page(batch_id, total, page)
                    total += len(page)
                    page = []
            if page:
                await self._store_page(batch_id, total, page)
                total += len(page)
            if not await self._write(lambda conn: self.store.publish(conn, batch_id, total)):
                raise UploadAbandoned(batch_id)
        except BaseException:
            # Nothing half-stored survives: the batch was never visible, now it is gone.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.engine.discard_ingest, batch_id)
            raise
        log.info("batch %s accepted: %d operations", batch_id, total)
        batch = await self._read(lambda conn: self.store.get(conn, batch_id, account.pk))
        assert batch is not None
        return batch

    async def _store_page(self, batch_id: str, first_seq: int, page: list[Operation]) -> None:
        await self._write(
            lambda conn: self.store.insert_operations(conn, batch_id, first_seq, page)
        )

    # --- reads and delete ----------------------------------------------------------------

    def get(self, account: Account, batch_id: str) -> BatchRow:
        """The account's batch, or 404: one indexed row, cheap enough for the event loop on
        SQLite in WAL mode (it never waits on a lock)."""
        batch = self.store.read_own(self.database, batch_id, account.pk)
        if batch is None:
            raise problems.not_found()
        return batch

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


async def _capped(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge(limit)
        if chunk:
            yield chunk
