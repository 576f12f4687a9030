"""Every request measured and logged, and `GET /metrics` (docs/observability.md).

`RequestObserver` wraps the whole app: one log line per request (request id, account,
method, route, status, duration) and, with metrics on, its count and duration by route
template. Labels stay bounded whatever clients send: the route is the template that served
the request (`/3.0/lists/{list_id}/members/{subscriber_hash}`), never the raw path, and a
path nothing serves is `unmatched`; an unknown method is `other`.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

import anyio
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.domain import problems
from conveyor.http.gate import new_request_id
from conveyor.http.responses import problem_response
from conveyor.observability.logs import RequestInfo, enter_request, leave_request
from conveyor.observability.metrics import ConveyorMetrics

log = logging.getLogger("conveyor.requests")

UNMATCHED = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The route that hands every path under /3.0 to the marketing route table.
MARKETING_PREFIX = "/3.0"

Template = Callable[[str], str | None]


class RequestObserver:
    """ASGI middleware: the outermost layer, so it times and sees every answer."""

    def __init__(
        self, app: ASGIApp, metrics: ConveyorMetrics | None, marketing_template: Template
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.marketing_template = marketing_template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        info = RequestInfo()
        token = enter_request(info)
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            route = self.route_of(scope)
            if self.metrics is not None:
                self.metrics.observe_request(method, route, status, elapsed)
            log.info(
                "%s %s %d %.1f ms",
                method, route, status, elapsed * 1000,
                extra={"method": method, "route": route, "status": status,
                       "duration_ms": round(elapsed * 1000, 2)},
            )  # fmt: skip
            leave_request(token)

    def route_of(self, scope: Scope) -> str:
        route = scope.get("route")
        if isinstance(route, Route):
            if route.path.endswith("{path:path}") or route.path == MARKETING_PREFIX:
                path = scope["path"].removeprefix(MARKETING_PREFIX)
                template = self.marketing_template(path)
                return MARKETING_PREFIX + template.rstrip("/") if template else UNMATCHED
            mounted = str(scope.get("root_path", ""))[len(scope.get("app_root_path", "")) :]
            return mounted + route.path
        if isinstance(route, Mount):
            return route.path + "/{path}"
        return UNMATCHED


class MetricsEndpoint:
    """GET /metrics: Prometheus' text format; behind a bearer token when one is set."""

    def __init__(self, metrics: ConveyorMetrics, token: str | None) -> None:
        self.metrics = metrics
        self.token = token

    def routes(self) -> list[Route]:
        return [Route("/metrics", self.scrape, methods=["GET"])]

    async def scrape(self, request: Request) -> Response:
        if self.token is not None and not self._authorized(request):
            problem = problems.Problem(
                401,
                "Unauthorized",
                "The metrics need `Authorization: Bearer <CONVEYOR_METRICS_TOKEN>`.",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
            return problem_response(problem, new_request_id())
        # The batch gauge reads the database: off the event loop.
        body = await anyio.to_thread.run_sync(self.metrics.scrape)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def _authorized(self, request: Request) -> bool:
        assert self.token is not None
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), self.token.encode())
