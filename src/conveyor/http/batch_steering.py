"""Conveyor's own batch endpoints beside Mailchimp's (README, "Beyond Mailchimp"): the
operations view, results as NDJSON, retry the failures, cancel, live progress events.

Mailchimp's routes and shapes stay exactly as they are; these are new routes under the
batch, each behind the same gate (auth, slot, deadline, problem documents).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.batches.progress_feed import ProgressEvent, ProgressEventKind, ProgressFeed
from conveyor.batches.results_view import BatchResultsView, OperationsQuery, parse_status
from conveyor.batches.service import BatchService
from conveyor.domain import problems
from conveyor.domain.clock import Clock
from conveyor.domain.operation_view import OperationStatus
from conveyor.domain.steps import FollowUp, Step
from conveyor.http.batches import rendered_batch
from conveyor.http.gate import Answer, ApiGate, RequestContext
from conveyor.http.limits import InProcessLimiter
from conveyor.http.streams import HeldEvents, HeldStream
from conveyor.marketing.common import validate

NDJSON_TYPE = "application/x-ndjson"
# An idle stream still sends a comment this often, so that proxies keep it open.
PING_SECONDS = 15
# A client that takes no event for this long is dropped (its slot freed).
SEND_TIMEOUT_SECONDS = 30


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status_codes: (
        Annotated[list[Annotated[int, Field(ge=100, le=599)]], Field(min_length=1)] | None
    ) = None


@dataclass
class BatchSteeringEndpoints:
    gate: ApiGate
    service: BatchService
    view: BatchResultsView
    dispatch: Callable[[Iterable[FollowUp]], None]
    clock: Clock
    # Per account and process: see `Limits.max_event_streams`.
    event_streams: InProcessLimiter
    progress_interval_seconds: float = 0.25

    def routes(self) -> list[Route]:
        one = "/3.0/batches/{batch_id}"
        return [
            Route(one + "/operations", self.operations, methods=["GET"]),
            Route(one + "/results.ndjson", self.results_ndjson, methods=["GET"]),
            Route(one + "/retry", self.retry, methods=["POST"]),
            Route(one + "/cancel", self.cancel, methods=["POST"]),
            Route(one + "/events", self.events, methods=["GET"]),
        ]

    async def operations(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            query = OperationsQuery.from_query(request.query_params)
            batch_id, api_root = request.path_params["batch_id"], self.gate.api_root(request)
            page = await self.gate.in_thread(
                lambda: self.view.operations(context.account, batch_id, query, api_root)
            )
            return 200, page

        return await self.gate.guarded(request, work, select_fields=True)

    async def results_ndjson(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            status = parse_status(
                request.query_params.get("status"),
                allowed=frozenset({OperationStatus.SUCCEEDED, OperationStatus.FAILED}),
            )
            batch_id = request.path_params["batch_id"]
            batch = await self.gate.in_thread(
                lambda: self.view.check_results(context.account, batch_id)
            )
            # Each page is read in a worker thread; the stream keeps the request's slot.
            return HeldStream(
                iterate_in_threadpool(self.view.ndjson_pages(batch.id, status)),
                media_type=NDJSON_TYPE,
                headers={"X-Request-Id": context.request_id},
            )

        return await self.gate.guarded(request, work)

    async def retry(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            body = validate(RetryRequest, await self.gate.read_json_object(request) or {})
            batch = await self.service.retry(
                context.account,
                request.path_params["batch_id"],
                self.gate.api_root(request),
                body.status_codes,
            )
            self.dispatch([FollowUp(Step.PREPROCESS, batch.id)])
            return 200, rendered_batch(self.gate, self.service, request, batch)

        return await self.gate.guarded(request, work)

    async def cancel(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            batch_id = request.path_params["batch_id"]
            batch, canceled = await self.gate.in_thread(
                lambda: self.service.cancel(context.account, batch_id)
            )
            if canceled:
                # Should this message be lost, the sweep finalizes the batch all the same.
                self.dispatch([FollowUp(Step.FINALIZE, batch.id)])
            return 200, rendered_batch(self.gate, self.service, request, batch)

        return await self.gate.guarded(request, work)

    async def events(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            account, batch_id = context.account, request.path_params["batch_id"]
            in_thread = not self.gate.database.is_sqlite
            if in_thread:
                batch = await self.gate.in_thread(lambda: self.service.get(account, batch_id))
            else:
                batch = self.service.get(account, batch_id)
            feed = ProgressFeed(
                read=lambda: self.service.find(account, batch.id),
                clock=self.clock,
                read_in_thread=in_thread,
                interval_seconds=self.progress_interval_seconds,
            )
            with ExitStack() as held:
                if not held.enter_context(self.event_streams.slot(account.pk)):
                    limit = self.event_streams.limit
                    raise problems.too_many_requests(
                        f"You have {limit} progress streams open, the most allowed at once. "
                        "Close one before opening another."
                    )
                response = HeldEvents(
                    self._sse(request, feed.events()),
                    headers={"X-Request-Id": context.request_id},
                    ping=PING_SECONDS,
                    send_timeout=SEND_TIMEOUT_SECONDS,
                )
                response.keep(held.pop_all())
            return response

        return await self.gate.guarded(request, work)

    async def _sse(
        self, request: Request, events: AsyncIterator[ProgressEvent]
    ) -> AsyncIterator[dict[str, str]]:
        async for event in events:
            yield {"event": event.kind.value, "data": self._payload(request, event)}

    def _payload(self, request: Request, event: ProgressEvent) -> str:
        payload: dict[str, Any]
        if event.kind is ProgressEventKind.DELETED or event.batch is None:
            payload = {"id": request.path_params["batch_id"]}
        else:
            payload = rendered_batch(self.gate, self.service, request, event.batch)
            payload["ops_per_second"] = event.rate.ops_per_second
            payload["eta_seconds"] = event.rate.eta_seconds
        return orjson.dumps(payload).decode()
