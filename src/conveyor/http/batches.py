"""The Batch API over HTTP: thin endpoints over `batches.service.BatchService`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from conveyor.batches.render import render_batch, render_batch_list
from conveyor.batches.service import Archive, BatchService
from conveyor.domain import idempotency
from conveyor.domain.archive import archive_name
from conveyor.domain.steps import FollowUp, Step
from conveyor.http.gate import Answer, ApiGate, RequestContext, new_request_id
from conveyor.http.problems import problem_for
from conveyor.http.responses import problem_response, reply_response
from conveyor.marketing.common import paging
from conveyor.storage.batches import BatchRow

DOWNLOAD_CHUNK = 256 * 1024


@dataclass
class BatchEndpoints:
    gate: ApiGate
    service: BatchService
    dispatch: Callable[[Iterable[FollowUp]], None]

    def routes(self) -> list[Route]:
        return [
            Route("/3.0/batches", self.submit, methods=["POST"]),
            Route("/3.0/batches", self.list_batches, methods=["GET"]),
            Route("/3.0/batches/", self.list_batches, methods=["GET"]),
            # Named `<id>-response.tar.gz` as the real service's archives are (clients take
            # the batch id from it); before `{batch_id}`, which would match the name too.
            Route("/3.0/batches/{batch_id}-response.tar.gz", self.download, methods=["GET"]),
            Route("/3.0/batches/{batch_id}", self.status, methods=["GET"]),
            Route("/3.0/batches/{batch_id}", self.delete, methods=["DELETE"]),
        ]

    def _render(self, request: Request, batch: BatchRow) -> dict[str, Any]:
        return rendered_batch(self.gate, self.service, request, batch)

    async def submit(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            raw_key = request.headers.get(idempotency.HEADER)
            key = None if raw_key is None else idempotency.check_key(raw_key)
            submission = await self.service.submit(
                context.account, request.stream(), self.gate.api_root(request), idempotency_key=key
            )
            batch = submission.batch
            if submission.replayed:
                # The batch as it is now; the first answer already started its work.
                response = reply_response(200, self._render(request, batch), context.request_id)
                response.headers[idempotency.REPLAYED_HEADER] = "true"
                return response
            # The answer shows the batch as stored (pending), whatever the workers do next.
            self.dispatch([FollowUp(Step.PREPROCESS, batch.id)])
            return 200, render_batch(batch, self.gate.api_root(request), "")

        return await self.gate.guarded(request, work)

    async def list_batches(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            count, offset = paging(request.query_params)
            rows, total = await self.gate.in_thread(
                lambda: self.service.list_recent(context.account, count, offset)
            )
            rendered = [self._render(request, row) for row in rows]
            return 200, render_batch_list(rendered, total, self.gate.api_root(request))

        return await self.gate.guarded(request, work, select_fields=True)

    async def status(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            batch_id = request.path_params["batch_id"]
            if self.gate.database.is_sqlite:
                # One indexed row from SQLite in WAL mode never waits on a lock: cheaper read
                # here than handed to a worker thread and back.
                batch = self.service.get(context.account, batch_id)
            else:
                batch = await self.gate.in_thread(
                    lambda: self.service.get(context.account, batch_id)
                )
            return 200, self._render(request, batch)

        return await self.gate.guarded(request, work, select_fields=True)

    async def delete(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            batch_id = request.path_params["batch_id"]
            await self.gate.in_thread(lambda: self.service.delete(context.account, batch_id))
            return 204, None

        return await self.gate.guarded(request, work)

    async def download(self, request: Request) -> Response:
        """The archive, to whoever holds a valid signed URL: no API key (the signature is
        the credential)."""
        request_id = new_request_id()
        batch_id = request.path_params["batch_id"]
        query = request.query_params
        try:
            archive = await anyio.to_thread.run_sync(
                self.service.check_download,
                batch_id,
                query.get("expires", ""),
                query.get("signature", ""),
            )
        except Exception as exc:
            problem = problem_for(exc)
            if problem is None:
                raise
            return problem_response(problem, request_id)
        return StreamingResponse(
            self._chunks(archive),
            media_type="application/gzip",
            headers={
                "Content-Length": str(archive.size),
                "Content-Disposition": f'attachment; filename="{archive_name(batch_id)}"',
                "X-Request-Id": request_id,
            },
        )

    async def _chunks(self, archive: Archive) -> AsyncIterator[bytes]:
        handle = await anyio.to_thread.run_sync(self.service.open_archive, archive)
        try:
            while data := await anyio.to_thread.run_sync(handle.read, DOWNLOAD_CHUNK):
                # obstore's reader hands back its own buffer type.
                yield bytes(data)
        finally:
            handle.close()


def rendered_batch(
    gate: ApiGate, service: BatchService, request: Request, batch: BatchRow
) -> dict[str, Any]:
    """The batch as clients see it, with a freshly signed archive URL once it is finished."""
    url = service.download_url(batch, gate.server_root(request))
    return render_batch(batch, gate.api_root(request), url)
