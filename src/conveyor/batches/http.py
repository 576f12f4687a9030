"""HTTP endpoints of the Batch API. Submission streams; everything else is a thin read."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from conveyor.batches import store, webhook_store
from conveyor.batches.engine import BatchEngine, FollowUp, Step
from conveyor.batches.render import render_batch, render_batch_list
from conveyor.domain import problems
from conveyor.domain.archive import archive_name
from conveyor.domain.batch_status import BatchStatus
from conveyor.domain.fields import apply_field_selection
from conveyor.domain.operations import (
    InvalidBatchBody,
    MalformedJson,
    Operation,
    TooManyOperations,
    aiter_operations,
)
from conveyor.domain.problems import FieldError, Problem
from conveyor.domain.signing import DownloadCheck, build_download_url, verify_download
from conveyor.http.api import ApiGate, new_request_id
from conveyor.http.responses import problem_response, reply_response
from conveyor.marketing.common import paging
from conveyor.marketing.routing import Account
from conveyor.settings import BatchSettings

log = logging.getLogger("conveyor.batches")

DOWNLOAD_CHUNK = 256 * 1024


@dataclass
class BatchEndpoints:
    gate: ApiGate
    engine: BatchEngine
    secret: bytes
    dispatch: Callable[[Iterable[FollowUp]], None]

    @property
    def settings(self) -> BatchSettings:
        return self.gate.settings.batches

    def routes(self) -> list[Route]:
        return [
            Route("/3.0/batches", self.submit, methods=["POST"]),
            Route("/3.0/batches", self.list, methods=["GET"]),
            Route("/3.0/batches/", self.list, methods=["GET"]),
            Route("/3.0/batches/{batch_id}", self.status, methods=["GET"]),
            Route("/3.0/batches/{batch_id}", self.delete, methods=["DELETE"]),
            Route("/3.0/batches/{batch_id}/response.tar.gz", self.download, methods=["GET"]),
        ]

    # --- helpers -------------------------------------------------------------------------

    async def _guarded(self, request: Request, work: Callable[[Account, str], Any]) -> Response:
        """Authenticate, take a connection slot, run `work`, answer problems as documents."""
        request_id = new_request_id()
        try:
            account = await self.gate.authenticate(request)
            with self.gate.limiter.slot(account.pk) as granted:
                if not granted:
                    raise problems.too_many_requests(
                        "You have exceeded the limit of "
                        f"{self.gate.settings.limits.max_concurrent_requests} "
                        "simultaneous connections."
                    )
                status, body = await work(account, request_id)
        except Problem as problem:
            return problem_response(problem, request_id)
        return reply_response(status, body, request_id)

    def _download_url(self, request: Request, batch: store.BatchRow) -> str:
        if batch.status != BatchStatus.FINISHED.value or not batch.archive_key:
            return ""
        base = self.gate.api_root(request).removesuffix("/3.0")
        return build_download_url(
            base, self.secret, batch.id, time.time(), self.settings.url_ttl_seconds
        )

    # --- submit --------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        async def work(account: Account, request_id: str) -> tuple[int, Any]:
            batch_id = await self._ingest(request, account)
            batch = await self._read(lambda conn: store.get_batch(conn, batch_id, account.pk))
            assert batch is not None
            # The answer shows the batch as stored (pending), whatever the workers do next.
            self.dispatch([FollowUp(Step.PREPROCESS, batch_id)])
            return 200, render_batch(batch, self.gate.api_root(request), "")

        return await self._guarded(request, work)

    async def _ingest(self, request: Request, account: Account) -> str:
        settings = self.settings
        unstarted = await self._read(lambda conn: store.count_unstarted(conn, account.pk))
        if unstarted >= settings.max_unstarted_batches:
            raise problems.too_many_requests(
                f"You have more than {settings.max_unstarted_batches} pending batches. "
                "Please wait for some to complete before adding any more batches."
            )
        pending_events = await self._read(
            lambda conn: webhook_store.count_pending(conn, account.pk)
        )
        if pending_events >= settings.max_pending_webhooks:
            raise problems.too_many_requests(
                f"You have more than {settings.max_pending_webhooks} pending webhooks. "
                "Please wait for some to complete before adding any more batches."
            )
        api_root = self.gate.api_root(request)
        batch_id: str = await self._write(
            lambda conn: store.create_ingesting(conn, account.pk, api_root)
        )
        try:
            total = 0
            page: list[Operation] = []
            body = _capped(request.stream(), settings.max_body_bytes)
            async for operation in aiter_operations(body, max_operations=settings.max_operations):
                page.append(operation)
                if len(page) >= settings.ingest_page_size:
                    await self._store_page(batch_id, total, page)
                    total += len(page)
                    page = []
            if page:
                await self._store_page(batch_id, total, page)
                total += len(page)
            if not await self._write(lambda conn: store.publish(conn, batch_id, total)):
                # The scheduler took the upload for abandoned (no page for
                # `stale_ingest_seconds`) and removed what it had stored.
                raise Problem(
                    408,
                    "Request Timeout",
                    "The batch was sent too slowly and was discarded. Please send it again.",
                )
        except BaseException as exc:
            # Nothing half-stored survives: the batch was never visible, now it is gone.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.engine.discard_ingest, batch_id)
            problem = _ingest_problem(exc)
            if problem is None:
                raise
            raise problem from None
        log.info("batch %s accepted: %d operations", batch_id, total)
        return batch_id

    async def _store_page(self, batch_id: str, first_seq: int, page: list[Operation]) -> None:
        await self._write(lambda conn: store.insert_operations(conn, batch_id, first_seq, page))

    # --- reads and delete ----------------------------------------------------------------

    async def list(self, request: Request) -> Response:
        async def work(account: Account, request_id: str) -> tuple[int, Any]:
            query = request.query_params
            count, offset = paging(query)
            since = time.time() - self.settings.retention_seconds
            rows, total = await self._read(
                lambda conn: store.list_batches(conn, account.pk, since, count, offset)
            )
            root = self.gate.api_root(request)
            rendered = [render_batch(row, root, self._download_url(request, row)) for row in rows]
            body = render_batch_list(rendered, total, root)
            return 200, apply_field_selection(
                body, query.get("fields"), query.get("exclude_fields")
            )

        return await self._guarded(request, work)

    async def status(self, request: Request) -> Response:
        async def work(account: Account, request_id: str) -> tuple[int, Any]:
            batch = await self._own_batch(request, account)
            query = request.query_params
            body = render_batch(
                batch, self.gate.api_root(request), self._download_url(request, batch)
            )
            return 200, apply_field_selection(
                body, query.get("fields"), query.get("exclude_fields")
            )

        return await self._guarded(request, work)

    async def delete(self, request: Request) -> Response:
        async def work(account: Account, request_id: str) -> tuple[int, Any]:
            batch = await self._own_batch(request, account)
            await anyio.to_thread.run_sync(self.engine.delete, batch.id)
            return 204, None

        return await self._guarded(request, work)

    async def _own_batch(self, request: Request, account: Account) -> store.BatchRow:
        batch_id = request.path_params["batch_id"]
        database = self.gate.database
        if database.is_sqlite:
            # One indexed row from SQLite in WAL mode never waits on a lock: cheaper read
            # here than handed to a worker thread and back.
            batch = store.read_own_batch(database, batch_id, account.pk)
        else:
            batch = await anyio.to_thread.run_sync(
                store.read_own_batch, database, batch_id, account.pk
            )
        if batch is None:
            raise problems.not_found()
        return batch

    # --- download (no API key: the signature is the credential) -------------------------

    async def download(self, request: Request) -> Response:
        request_id = new_request_id()
        batch_id = request.path_params["batch_id"]
        check = verify_download(
            self.secret,
            batch_id,
            request.query_params.get("expires", ""),
            request.query_params.get("signature", ""),
            time.time(),
        )
        if check is not DownloadCheck.OK:
            detail = (
                "This download link has expired. Read the batch again for a fresh link."
                if check is DownloadCheck.EXPIRED
                else "This download link is not valid."
            )
            return problem_response(Problem(403, "Forbidden", detail), request_id)
        batch = await self._read(lambda conn: store.get_batch(conn, batch_id))
        if batch is None or not batch.archive_key:
            return problem_response(problems.not_found(), request_id)
        blobs = self.engine.blobs
        key = batch.archive_key
        size = await anyio.to_thread.run_sync(blobs.size, key)
        if size is None:
            return problem_response(problems.not_found(), request_id)

        async def chunks() -> AsyncIterator[bytes]:
            handle = await anyio.to_thread.run_sync(blobs.open, key)
            try:
                while data := await anyio.to_thread.run_sync(handle.read, DOWNLOAD_CHUNK):
                    # obstore's reader hands back its own buffer type.
                    yield bytes(data)
            finally:
                handle.close()

        return StreamingResponse(
            chunks(),
            media_type="application/gzip",
            headers={
                "Content-Length": str(size),
                "Content-Disposition": f'attachment; filename="{archive_name(batch_id)}"',
                "X-Request-Id": request_id,
            },
        )

    # --- database calls off the event loop -----------------------------------------------

    async def _read(self, query: Callable[[Any], Any]) -> Any:
        def run() -> Any:
            with self.gate.database.read() as conn:
                return query(conn)

        return await anyio.to_thread.run_sync(run)

    async def _write(self, statement: Callable[[Any], Any]) -> Any:
        def run() -> Any:
            with self.gate.database.write() as conn:
                return statement(conn)

        return await anyio.to_thread.run_sync(run)


class _BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit


async def _capped(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise _BodyTooLarge(limit)
        if chunk:
            yield chunk


def _ingest_problem(exc: BaseException) -> Problem | None:
    if isinstance(exc, _BodyTooLarge):
        return problems.payload_too_large(exc.limit)
    if isinstance(exc, TooManyOperations):
        return Problem(413, "Request Entity Too Large", exc.detail)
    if isinstance(exc, MalformedJson):
        return problems.json_parse_error(exc.detail)
    if isinstance(exc, InvalidBatchBody):
        field = exc.field or "operations"
        return problems.invalid_resource([FieldError(field, exc.detail)], exc.detail)
    if isinstance(exc, ClientDisconnect):
        return Problem(400, "Bad Request", "The client disconnected before the body was sent.")
    if isinstance(exc, Problem):
        return exc
    return None
