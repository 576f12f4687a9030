"""The ASGI application: every HTTP endpoint of Conveyor, built from the parts it is given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from conveyor.batches.results_view import BatchResultsView
from conveyor.batches.service import BatchService
from conveyor.batches.webhooks import WebhookService
from conveyor.domain import problems
from conveyor.domain.accounts import Account
from conveyor.domain.clock import Clock
from conveyor.domain.steps import FollowUp
from conveyor.emulator.controls import TestControls
from conveyor.http.api_docs import ApiDocs
from conveyor.http.auth import KeyCache
from conveyor.http.batch_steering import BatchSteeringEndpoints
from conveyor.http.batches import BatchEndpoints
from conveyor.http.dashboard.pages import DashboardPages
from conveyor.http.dashboard.reads import DashboardReads
from conveyor.http.dashboard.session import SessionCodec
from conveyor.http.edge import ApiEdge
from conveyor.http.gate import Answer, ApiGate, RequestContext, new_request_id
from conveyor.http.health import Check, Health
from conveyor.http.limits import InProcessLimiter, create_limiter
from conveyor.http.marketing import marketing_endpoint
from conveyor.http.metrics import MetricsEndpoint, RequestObserver
from conveyor.http.responses import problem_response
from conveyor.http.test_controls import EmulatorEdge, TestControlEndpoints
from conveyor.http.webhooks import WebhookEndpoints
from conveyor.marketing.routing import RouteTable
from conveyor.observability.metrics import ConveyorMetrics
from conveyor.settings import Settings
from conveyor.storage.accounts import AccountStore
from conveyor.storage.blobs import BlobStore
from conveyor.storage.database import Database
from conveyor.storage.errors import is_unique_violation
from conveyor.storage.marketing_stores import MarketingStores
from conveyor.storage.request_slots import RequestSlotStore

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

Dispatch = Callable[[Iterable[FollowUp]], None]
Endpoint = Callable[[Request], Awaitable[Response]]


class ServerParts(Protocol):
    """What the HTTP edge is built from; the composition root provides it."""

    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def database(self) -> Database: ...
    @property
    def accounts(self) -> AccountStore: ...
    @property
    def request_slots(self) -> RequestSlotStore: ...
    @property
    def routes(self) -> RouteTable: ...
    @property
    def batches(self) -> BatchService: ...
    @property
    def webhooks(self) -> WebhookService: ...
    @property
    def blobs(self) -> BlobStore: ...
    @property
    def test_controls(self) -> TestControls: ...
    @property
    def metrics(self) -> ConveyorMetrics | None: ...
    @property
    def marketing_stores(self) -> MarketingStores: ...
    @property
    def secret(self) -> bytes: ...


def _no_dispatch(follow_ups: Iterable[FollowUp]) -> None:
    """For an app without a runtime: the scheduler's sweep picks the work up later."""


def build_gate(parts: ServerParts) -> ApiGate:
    settings, database, accounts = parts.settings, parts.database, parts.accounts

    def lookup(key: str) -> Account | None:
        with database.read() as conn:
            account = accounts.account_for_key(conn, key)
        if account is None and settings.emulate:
            return adopt(key)
        return account

    def adopt(key: str) -> Account | None:
        """Emulate mode: a well-formed key unseen before gets its own account."""
        try:
            with database.write() as conn:
                return accounts.adopt_key(conn, key)
        except Exception as exc:
            if not is_unique_violation(exc):
                raise
        with database.read() as conn:  # a racing first use of the same key won
            return accounts.account_for_key(conn, key)

    return ApiGate(
        settings=settings,
        database=database,
        keys=KeyCache(lookup, parts.clock),
        limiter=create_limiter(
            settings.limiter_url,
            parts.request_slots,
            settings.limits.max_concurrent_requests,
            # A lease outlives any request (they time out), so only a dead holder's expires.
            settings.limits.request_timeout_seconds + 10,
        ),
    )


def create_app(
    parts: ServerParts,
    dispatch: Dispatch = _no_dispatch,
    *,
    readiness: Mapping[str, Check] | None = None,
) -> Starlette:
    """The app over `parts`; `dispatch` sends the steps that requests cause (none: the
    sweep finds them), `readiness` adds checks to `/readyz` (the broker's, say)."""
    gate = build_gate(parts)
    health = Health(
        {"database": parts.database.check, "blobs": parts.blobs.check, **(readiness or {})}
    )
    batches = BatchEndpoints(gate, parts.batches, dispatch)
    steering = BatchSteeringEndpoints(
        gate,
        parts.batches,
        BatchResultsView(parts.database, parts.batches.store, parts.batches.results),
        dispatch,
        parts.clock,
        InProcessLimiter(parts.settings.limits.max_event_streams),
    )
    webhooks = WebhookEndpoints(gate, parts.webhooks, dispatch)
    served = [*batches.routes(), *steering.routes(), *webhooks.routes()]
    controls: list[Route] = []
    metrics = parts.metrics
    edges = [
        # Outermost: it times and logs every answer, the edge's own included.
        Middleware(RequestObserver, metrics=metrics, marketing_template=parts.routes.template_of),
        Middleware(ApiEdge, server_root=lambda scope: gate.server_root(Request(scope))),
    ]
    controls += ApiDocs(
        gate, metrics=metrics is not None, test_controls=parts.settings.test_controls
    ).routes()
    if metrics is not None:
        controls += MetricsEndpoint(metrics, parts.settings.metrics_token).routes()
    # After the API's routes: an API request never tries the dashboard's.
    pages = (
        build_dashboard(parts, gate, dispatch).routes() if parts.settings.dashboard_enabled else []
    )
    if parts.settings.test_controls:
        emulator = parts.test_controls
        controls += TestControlEndpoints(
            parts.settings, gate, emulator, parts.accounts, dispatch
        ).routes()
        edges.append(Middleware(EmulatorEdge, controls=emulator, keys=gate.keys))
    endpoint = _answering_405_for(served, gate, marketing_endpoint(gate, parts.routes))
    routes = [
        *health.routes(),
        *controls,
        *served,
        Route("/3.0", endpoint, methods=ALL_METHODS),
        Route("/3.0/{path:path}", endpoint, methods=ALL_METHODS),
        *pages,
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return problem_response(problems.not_found(), new_request_id())

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        allowed = getattr(exc, "headers", None) or {}
        methods = str(allowed.get("Allow", "")).replace(",", " ").split()
        return problem_response(problems.method_not_allowed(methods), new_request_id())

    async def server_error(request: Request, exc: Exception) -> Response:
        return problem_response(problems.internal_error(), new_request_id())

    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: method_not_allowed, 500: server_error},
        middleware=edges,
    )
    app.state.gate = gate
    return app


def build_dashboard(parts: ServerParts, gate: ApiGate, dispatch: Dispatch) -> DashboardPages:
    settings = parts.settings
    reads = DashboardReads(
        parts.database,
        parts.clock,
        parts.accounts,
        parts.batches,
        parts.batches.results,
        parts.marketing_stores,
    )
    return DashboardPages(
        reads=reads,
        batches=parts.batches,
        webhooks=parts.webhooks,
        keys=gate.keys,
        codec=SessionCodec(parts.secret, settings.dashboard_session_seconds),
        dispatch=dispatch,
        clock=parts.clock,
        api_root=gate.api_root,
        event_streams=InProcessLimiter(settings.limits.max_event_streams),
    )


def _answering_405_for(served: list[Route], gate: ApiGate, endpoint: Endpoint) -> Endpoint:
    """`endpoint` for every path the routes in `served` do not serve; where one of them
    serves the path with other methods, 405 with their `Allow` (the catch-all route takes
    every method, so Starlette's own 405 never fires under /3.0)."""

    async def dispatch(request: Request) -> Response:
        allowed: set[str] = set()
        for route in served:
            match, _ = route.matches(request.scope)
            if match is Match.PARTIAL:
                allowed |= route.methods or set()
        if not allowed:
            return await endpoint(request)

        async def refuse(_context: RequestContext) -> Answer:
            raise problems.method_not_allowed(allowed)

        return await gate.guarded(request, refuse)

    return dispatch
