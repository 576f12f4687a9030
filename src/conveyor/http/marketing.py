"""The Marketing API over HTTP: one endpoint for every route of the route table.

One request is one transaction, run in a worker thread and committed only for a 2xx
answered before the request deadline (docs/architecture.md decision 3).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from conveyor.domain.accounts import Account
from conveyor.http.gate import Answer, ApiGate, Deadline, RequestContext
from conveyor.http.responses import reply_response
from conveyor.marketing.routing import Reply, RouteTable, invoke
from conveyor.storage.database import Database


def marketing_endpoint(gate: ApiGate, routes: RouteTable) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            body = await gate.read_body(request)
            path = "/" + request.path_params.get("path", "")
            query = dict(request.query_params)
            api_root = gate.api_root(request)
            # HEAD is a GET whose body the server does not send (RFC 9110 9.3.2), as
            # Starlette answers it on every other GET route.
            method = "GET" if request.method == "HEAD" else request.method
            write_lock = (
                gate.sqlite_write_lock if method != "GET" and gate.database.is_sqlite else None
            )

            def run() -> Reply:
                return execute(
                    gate.database, routes, context.account, method, path, query, body,
                    api_root=api_root, request_id=context.request_id,
                    deadline=context.deadline, write_lock=write_lock,
                )  # fmt: skip

            reply = await gate.in_thread(run)
            if reply.headers:
                return reply_response(reply.status, reply.body, context.request_id, reply.headers)
            return reply.status, reply.body

        return await gate.guarded(request, work)

    return endpoint


def execute(
    database: Database,
    routes: RouteTable,
    account: Account,
    method: str,
    path: str,
    query: dict[str, str],
    body: bytes,
    *,
    api_root: str,
    request_id: str,
    deadline: Deadline,
    write_lock: threading.Lock | None = None,
) -> Reply:
    """One HTTP request = one transaction, committed only for a 2xx answered in time.

    With `write_lock`, the transaction runs while holding it (SQLite writers, see ApiGate).
    """
    if write_lock is None:
        return _transaction(
            database, routes, account, method, path, query, body,
            api_root=api_root, request_id=request_id, deadline=deadline,
        )  # fmt: skip
    if not write_lock.acquire(timeout=max(deadline.at - time.monotonic(), 0.0)):
        # Timed out in the queue: the client has had its 504 (run_sync); nothing was done.
        return Reply(504)
    try:
        return _transaction(
            database, routes, account, method, path, query, body,
            api_root=api_root, request_id=request_id, deadline=deadline,
        )  # fmt: skip
    finally:
        write_lock.release()


def _transaction(
    database: Database,
    routes: RouteTable,
    account: Account,
    method: str,
    path: str,
    query: dict[str, str],
    body: bytes,
    *,
    api_root: str,
    request_id: str,
    deadline: Deadline,
) -> Reply:
    engine = database.reader if method == "GET" else database.writer
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            reply = invoke(
                routes, conn, account, method, path, query, body or None,
                api_root=api_root, request_id=request_id,
            )  # fmt: skip
            if reply.status < 400 and not deadline.expired:
                transaction.commit()
            else:
                transaction.rollback()
        except BaseException:
            transaction.rollback()
            raise
    return reply
