"""The per-account connection limit across API processes, and slots a dead holder cannot leak."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import anyio
import httpx2

from conveyor.http.limits import create_limiter
from tests.conftest import LIST_BODY
from tests.contract.stack import Stack


def test_connection_limit_holds_across_two_api_instances(stack: Stack) -> None:
    """Two apps (two API processes when scaled out) share one count per account: with a limit
    of 2, one request held open on each leaves none for a third on either."""
    app_a, app_b = stack.api_instances(2, max_connections=2)
    _, key = stack.new_key()
    _, other_key = stack.new_key()
    auth, other = httpx2.BasicAuth("u", key), httpx2.BasicAuth("u", other_key)
    results: dict[str, httpx2.Response] = {}
    body = json.dumps(LIST_BODY).encode()

    async def main() -> None:
        release = anyio.Event()
        started = [anyio.Event(), anyio.Event()]

        def slow_body(index: int) -> AsyncIterator[bytes]:
            async def parts() -> AsyncIterator[bytes]:
                yield body[:20]
                started[index].set()
                await release.wait()
                yield body[20:]

            return parts()

        async with (
            httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app_a), base_url="http://testserver"
            ) as a,
            httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app_b), base_url="http://testserver"
            ) as b,
        ):

            async def held(name: str, client: httpx2.AsyncClient, index: int) -> None:
                results[name] = await client.post(
                    "/3.0/lists", content=slow_body(index), auth=auth,
                    headers={"Content-Type": "application/json"},
                )  # fmt: skip

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(held, "held on a", a, 0)
                tasks.start_soon(held, "held on b", b, 1)
                with anyio.fail_after(10):
                    await started[0].wait()
                    await started[1].wait()
                results["third on a"] = await a.get("/3.0/ping", auth=auth)
                results["third on b"] = await b.get("/3.0/ping", auth=auth)
                results["other account on b"] = await b.get("/3.0/ping", auth=other)
                release.set()
            results["after on a"] = await a.get("/3.0/ping", auth=auth)
            results["after on b"] = await b.get("/3.0/ping", auth=auth)

    anyio.run(main)
    statuses = {name: response.status_code for name, response in results.items()}
    assert statuses == {
        "held on a": 200,
        "held on b": 200,
        "third on a": 429,
        "third on b": 429,
        "other account on b": 200,
        "after on a": 200,
        "after on b": 200,
    }, {name: response.text for name, response in results.items()}
    problem = results["third on b"].json()
    assert problem["title"] == "TooManyRequests"
    assert "2 simultaneous" in problem["detail"]


HOLDER = """
import sys, time
from conveyor.domain.clock import SystemClock
from conveyor.http.limits import create_limiter
from conveyor.storage.database import open_database
from conveyor.storage.request_slots import RequestSlotStore

limiter_url, database_url, lease, account_pk, count = sys.argv[1:]
slots = RequestSlotStore(open_database(database_url), SystemClock())
limiter = create_limiter(limiter_url, slots, int(count), float(lease))
held = [limiter.slot(int(account_pk)) for _ in range(int(count))]
print(all(slot.__enter__() for slot in held), flush=True)
time.sleep(600)
"""


def test_slots_of_a_sigkilled_holder_expire_with_their_lease(stack: Stack) -> None:
    lease, limit, account_pk = 2.0, 2, 4242
    settings = stack.settings
    survivor = create_limiter(
        settings.limiter_url, stack.other_process().request_slots, limit, lease_seconds=lease
    )
    if not stack.spec.shared_limiter:
        # One process holds every count: a killed `conveyor serve` takes them with it, and
        # the restarted process (a new limiter) starts with all its slots free.
        with survivor.slot(account_pk) as first, survivor.slot(account_pk) as second:
            assert first and second
        return

    # Another API process takes every slot of the account, then is SIGKILLed holding them.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(settings.limiter_url),
         settings.resolved_database_url, str(lease), str(account_pk), str(limit)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "True"
        killed_at = time.monotonic()
        os.kill(holder.pid, signal.SIGKILL)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()

    with survivor.slot(account_pk) as granted:
        assert not granted, "the dead holder's slots were freed before their lease ran out"
    # Nothing releases them but the clock: wait for the lease, checking as it runs out.
    deadline = killed_at + lease + 10
    while True:
        with (
            survivor.slot(account_pk) as first,
            survivor.slot(account_pk) as second,
            survivor.slot(account_pk) as third,
        ):
            if first and second:
                assert not third
                break
        assert time.monotonic() < deadline, "a SIGKILLed holder leaked its slots"
        time.sleep(0.05)
