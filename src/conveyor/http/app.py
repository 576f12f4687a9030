"""The ASGI application."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.batches.engine import FollowUp
from conveyor.batches.http import BatchEndpoints
from conveyor.batches.webhook_endpoints import WebhookEndpoints
from conveyor.domain import problems
from conveyor.http.api import ApiGate, marketing_endpoint, new_request_id
from conveyor.http.auth import KeyCache
from conveyor.http.limits import create_limiter
from conveyor.http.responses import problem_response
from conveyor.runtime.bootstrap import Services
from conveyor.storage import accounts

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def build_gate(services: Services) -> ApiGate:
    database = services.database

    def lookup(key: str) -> accounts.Account | None:
        with database.read() as conn:
            return accounts.account_for_key(conn, key)

    return ApiGate(
        settings=services.settings,
        database=database,
        keys=KeyCache(lookup),
        limiter=create_limiter(
            services.settings.limiter_url,
            database,
            services.settings.limits.max_concurrent_requests,
            # A lease outlives any request (they time out), so only a dead holder's expires.
            services.settings.limits.request_timeout_seconds + 10,
        ),
    )


def _no_dispatch(follow_ups: Iterable[FollowUp]) -> None:
    """For an app without a runtime: the scheduler's sweep picks the work up later."""


def create_app(
    services: Services, dispatch: Callable[[Iterable[FollowUp]], None] = _no_dispatch
) -> Starlette:
    gate = build_gate(services)
    endpoint = marketing_endpoint(gate, services.routes)
    batches = BatchEndpoints(gate, services.engine, services.secret, dispatch)
    webhooks = WebhookEndpoints(
        gate, services.webhooks, dispatch, services.settings.batches.max_webhooks
    )
    routes = [
        *batches.routes(),
        *webhooks.routes(),
        Route("/3.0", endpoint, methods=ALL_METHODS),
        Route("/3.0/{path:path}", endpoint, methods=ALL_METHODS),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return problem_response(problems.not_found(), new_request_id())

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return problem_response(problems.method_not_allowed(), new_request_id())

    async def server_error(request: Request, exc: Exception) -> Response:
        return problem_response(problems.internal_error(), new_request_id())

    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: method_not_allowed, 500: server_error},
    )
    app.state.gate = gate
    return app
