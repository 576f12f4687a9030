"""The HTTP adapter: authentication, limits and problem documents around the route table."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import Response

from conveyor.domain import problems
from conveyor.domain.problems import Problem
from conveyor.http.auth import KeyCache, credential_from_header
from conveyor.http.limits import ConcurrencyLimiter
from conveyor.http.responses import problem_response, reply_response
from conveyor.marketing.routing import Account, Reply, RouteTable, invoke
from conveyor.settings import Settings
from conveyor.storage.database import Database

log = logging.getLogger("conveyor.http")
T = TypeVar("T")


class RequestTimedOut(Exception):
    pass


@dataclass
class Deadline:
    at: float

    @property
    def expired(self) -> bool:
        return time.monotonic() > self.at


@dataclass
class ApiGate:
    """What every authenticated request passes through, batches included."""

    settings: Settings
    database: Database
    keys: KeyCache
    limiter: ConcurrencyLimiter
    # SQLite admits one writer at a time, and a writer that finds the database locked polls
    # in its busy handler with sleeps of up to 100 ms: ten concurrent POSTs spent a third of
    # their time asleep there (py-spy). Queued on this lock instead, the next writer starts
    # the moment the previous one commits.
    sqlite_write_lock: threading.Lock = field(default_factory=threading.Lock)
    # Starlette rebuilds `request.base_url` on every call (~15 µs here); it only depends on these.
    _roots: dict[tuple[Any, ...], str] = field(default_factory=dict)

    def api_root(self, request: Request) -> str:
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/") + "/3.0"
        scope = request.scope
        server = scope.get("server")
        key = (
            scope.get("scheme"),
            request.headers.get("host"),
            tuple(server) if server else None,  # a list under some servers and TestClient
            scope.get("app_root_path", scope.get("root_path", "")),
        )
        root = self._roots.get(key)
        if root is None:
            if len(self._roots) >= 256:  # the Host header is the client's to choose
                self._roots.clear()
            root = self._roots[key] = str(request.base_url).rstrip("/") + "/3.0"
        return root

    async def authenticate(self, request: Request) -> Account:
        trigger = request.headers.get("x-trigger-error")
        if trigger:
            forced = problems.triggered(trigger)
            if forced is not None:
                raise forced
        key = credential_from_header(request.headers.get("authorization"))
        if key is None:
            raise problems.api_key_missing()
        # A thread hop costs ~70 µs here; a key seen in the last seconds needs none.
        known, account = self.keys.cached(key)
        if not known:
            account = await anyio.to_thread.run_sync(self.keys.resolve, key)
        if account is None:
            raise problems.api_key_invalid()
        return account

    async def read_body(self, request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise problems.payload_too_large(limit)
        parts: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise problems.payload_too_large(limit)
            parts.append(chunk)
        return b"".join(parts)

    async def run_sync(self, deadline: Deadline, work: Callable[[], T]) -> T:
        """Run blocking work in a thread, answering 504 if it outlives the request timeout.

        The thread cannot be interrupted, so the work itself checks the deadline before it
        commits (see `execute`): a timed-out request leaves no write behind.
        """
        remaining = max(deadline.at - time.monotonic(), 0.0)
        with anyio.move_on_after(remaining) as scope:
            return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        if scope.cancelled_caught:
            raise Problem(
                504,
                "Request Timeout",
                f"The request took longer than {self.settings.limits.request_timeout_seconds:g} "
                "seconds and was abandoned; nothing it did was saved.",
            )
        raise AssertionError("unreachable")  # pragma: no cover


def new_request_id() -> str:
    return str(uuid.uuid4())


def marketing_endpoint(gate: ApiGate, routes: RouteTable) -> Callable[[Request], Any]:
    limits = gate.settings.limits

    async def endpoint(request: Request) -> Response:
        request_id = new_request_id()
        try:
            account = await gate.authenticate(request)
            with gate.limiter.slot(account.pk) as granted:
                if not granted:
                    raise problems.too_many_requests(
                        f"You have exceeded the limit of {limits.max_concurrent_requests} "
                        "simultaneous connections."
                    )
                body = await gate.read_body(request, limits.max_body_bytes)
                deadline = Deadline(time.monotonic() + limits.request_timeout_seconds)
                path = "/" + request.path_params.get("path", "")
                query = dict(request.query_params)
                api_root = gate.api_root(request)
                method = request.method
                write_lock = (
                    gate.sqlite_write_lock if method != "GET" and gate.database.is_sqlite else None
                )

                def work() -> Reply:
                    return execute(
                        gate.database, routes, account, method, path, query, body,
                        api_root=api_root, request_id=request_id, deadline=deadline,
                        write_lock=write_lock,
                    )  # fmt: skip

                reply = await gate.run_sync(deadline, work)
        except Problem as problem:
            return problem_response(problem, request_id)
        return reply_response(reply.status, reply.body, request_id)

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
