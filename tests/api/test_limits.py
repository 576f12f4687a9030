"""The per-account limit on requests in flight: 429 "TooManyRequests" beyond it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx2

from conveyor.composition import Services
from conveyor.http.app import create_app
from conveyor.http.limits import InProcessLimiter
from conveyor.settings import Limits
from tests.api.support import assert_problem
from tests.conftest import ApiUser, new_account_key


def test_limiter_counts_per_account() -> None:
    limiter = InProcessLimiter(2)
    with limiter.slot(1) as a, limiter.slot(1) as b, limiter.slot(1) as c, limiter.slot(2) as d:
        assert (a, b, c, d) == (True, True, False, True)
    with limiter.slot(1) as again:  # every slot was given back, the refused one too
        assert again
    assert not limiter._in_flight


def test_limiter_gives_the_slot_back_on_errors() -> None:
    limiter = InProcessLimiter(1)
    try:
        with limiter.slot(7):
            raise ValueError("handler failed")
    except ValueError:
        pass
    with limiter.slot(7) as granted:
        assert granted


def test_request_beyond_the_limit_is_429(api: ApiUser, services: Services) -> None:
    """One request is held open while it uploads its body; a second one is refused."""
    one = services.settings.model_copy(update={"limits": Limits(max_concurrent_requests=1)})
    app = create_app(services.with_settings(one))
    _, other_key = new_account_key(services)
    results: dict[str, httpx2.Response] = {}

    async def main() -> None:
        started, release = anyio.Event(), anyio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield b'{"email_address": "held@example.com", '
            started.set()
            await release.wait()
            yield b'"status": "subscribed"}'

        transport = httpx2.ASGITransport(app=app)
        auth = httpx2.BasicAuth("u", api.key)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:

            async def held() -> None:
                results["held"] = await client.post(
                    "/3.0/lists/nope/members", content=slow_body(), auth=auth
                )

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(held)
                with anyio.fail_after(10):
                    await started.wait()
                results["refused"] = await client.get("/3.0/ping", auth=auth)
                other = httpx2.BasicAuth("u", other_key)
                results["other account"] = await client.get("/3.0/ping", auth=other)
                release.set()
            results["after"] = await client.get("/3.0/ping", auth=auth)

    anyio.run(main)
    problem = assert_problem(results["refused"], 429, "TooManyRequests")
    assert "1 simultaneous" in problem["detail"]
    assert results["other account"].status_code == 200
    assert_problem(results["held"], 404)  # it ran to the end once its body arrived
    assert results["after"].status_code == 200
