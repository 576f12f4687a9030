"""Health for load balancers and orchestrators: no API key, no account, no slot.

`/healthz` says the process serves HTTP. `/readyz` says it can do its work: every
dependency answers (the database, the broker, the blob store), each check bounded by a
deadline so a hung dependency makes the probe fail rather than hang.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Check = Callable[[], None]


@dataclass(frozen=True)
class Health:
    checks: Mapping[str, Check]
    timeout_seconds: float = 5.0

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.alive, methods=["GET", "HEAD"]),
            Route("/readyz", self.ready, methods=["GET", "HEAD"]),
        ]

    async def alive(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        results: dict[str, str] = {}

        async def run(name: str, check: Check) -> None:
            with anyio.move_on_after(self.timeout_seconds) as scope:
                try:
                    await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
                    results[name] = "ok"
                except Exception as exc:  # any failure of a dependency makes us unready
                    results[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            if scope.cancelled_caught:
                results[name] = f"no answer within {self.timeout_seconds:g} seconds"

        async with anyio.create_task_group() as group:
            for name, check in self.checks.items():
                group.start_soon(run, name, check)
        ready = all(result == "ok" for result in results.values())
        body = {
            "status": "ready" if ready else "unavailable",
            "checks": dict(sorted(results.items())),
        }
        return JSONResponse(body, status_code=200 if ready else 503)
