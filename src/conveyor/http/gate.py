"""What every authenticated request passes through: one wrapper for auth, the per-account
connection slot, the request deadline, and problem documents."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response

from conveyor.domain import problems
from conveyor.domain.accounts import Account
from conveyor.domain.field_selection import (
    FieldSelectionError,
    apply_field_selection,
    check_field_selection,
)
from conveyor.domain.problems import FieldError, Problem
from conveyor.http.auth import KeyCache, credential_from_header
from conveyor.http.limits import ConcurrencyLimiter
from conveyor.http.problems import problem_for
from conveyor.http.responses import problem_response, reply_response
from conveyor.http.streams import HeldStream
from conveyor.observability.logs import current_request, note_account
from conveyor.settings import Settings
from conveyor.storage.database import Database

log = logging.getLogger("conveyor.http")
T = TypeVar("T")


def new_request_id() -> str:
    """The id of the request being answered (the one its log line carries), else a new one."""
    request = current_request()
    return request.request_id if request is not None else str(uuid.uuid4())


@dataclass(frozen=True)
class Deadline:
    at: float

    @property
    def expired(self) -> bool:
        return time.monotonic() > self.at

    @property
    def remaining(self) -> float:
        return max(self.at - time.monotonic(), 0.0)


@dataclass(frozen=True)
class RequestContext:
    """Who is asking, and by when the answer is due."""

    account: Account
    request_id: str
    deadline: Deadline


# What an endpoint's work answers: a status and a JSON body, or a ready response.
Answer = tuple[int, Any] | Response
Work = Callable[[RequestContext], Awaitable[Answer]]


@dataclass
class ApiGate:
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

    async def guarded(
        self, request: Request, work: Work, *, select_fields: bool = False
    ) -> Response:
        """Authenticate, take a connection slot, run `work` by the request deadline, and
        answer whatever it raises as a problem document (`http.problems`).

        A `HeldStream` answer that keeps the request's slot holds it until its last byte is
        sent (or its client goes); its body runs after the deadline, which bounds only
        `work`: a deadline in the middle would cut the body short, unnoticed.
        """
        request_id = new_request_id()
        limits = self.settings.limits
        try:
            account = await self.authenticate(request)
            note_account(account.account_id, request.path_params.get("batch_id"))
            with ExitStack() as held:
                granted = held.enter_context(self.limiter.slot(account.pk))
                if not granted:
                    raise problems.too_many_requests(
                        f"You have exceeded the limit of {limits.max_concurrent_requests} "
                        "simultaneous connections."
                    )
                deadline = Deadline(time.monotonic() + limits.request_timeout_seconds)
                context = RequestContext(account, request_id, deadline)
                with anyio.move_on_after(deadline.remaining) as scope:
                    answer = await work(context)
                if scope.cancelled_caught:
                    raise Problem(
                        504,
                        "Request Timeout",
                        f"The request took longer than {limits.request_timeout_seconds:g} "
                        "seconds and was abandoned; nothing it did was saved.",
                    )
                if isinstance(answer, HeldStream) and answer.keeps_request_slot:
                    answer.keep(held.pop_all())
        except Exception as exc:
            problem = problem_for(exc)
            if problem is None:
                log.exception("request failed: request_id=%s %s", request_id, request.url.path)
                problem = problems.internal_error()
            return problem_response(problem, request_id)
        if isinstance(answer, Response):
            return answer
        status, body = answer
        if select_fields and isinstance(body, dict):
            query = request.query_params
            fields, exclude = query.get("fields"), query.get("exclude_fields")
            try:
                check_field_selection(body, fields, exclude)
            except FieldSelectionError as exc:
                problem = problems.requested_fields_invalid([FieldError(exc.parameter, str(exc))])
                return problem_response(problem, request_id)
            body = apply_field_selection(body, fields, exclude)
        return reply_response(status, body, request_id)

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

    def server_root(self, request: Request) -> str:
        """The server's base URL as clients reach it (the API root without `/3.0`)."""
        return self.api_root(request).removesuffix("/3.0")

    async def authenticate(self, request: Request) -> Account:
        key = credential_from_header(request.headers.get("authorization"))
        if key is None:
            raise problems.api_key_missing()
        # A thread hop costs ~70 µs here; a key seen in the last seconds needs none.
        known, account = self.keys.cached(key)
        if not known:
            account = await anyio.to_thread.run_sync(self.keys.resolve, key)
        if account is None:
            raise problems.api_key_invalid()
        # A forced error is for the account's own testing: only a valid key may ask for one.
        trigger = request.headers.get("x-trigger-error")
        if trigger:
            forced = problems.triggered(trigger)
            if forced is not None:
                raise forced
        return account

    async def read_body(self, request: Request, limit: int | None = None) -> bytes:
        limit = self.settings.limits.max_body_bytes if limit is None else limit
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

    async def read_json_object(self, request: Request) -> dict[str, Any] | None:
        """The body as a JSON object, or None when there is none."""
        raw = await self.read_body(request)
        if not raw.strip():
            return None
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise problems.json_parse_error() from None
        if not isinstance(value, dict):
            raise problems.invalid_resource(
                [FieldError("", "The request body must be a JSON object.")]
            )
        return value

    async def in_thread(self, work: Callable[[], T]) -> T:
        """Blocking work off the event loop. A thread cannot be interrupted: when the request
        deadline fires, the caller stops waiting and the work must not commit after it (see
        `http.marketing.execute`)."""
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
