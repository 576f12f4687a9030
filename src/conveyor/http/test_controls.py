"""The emulator's test controls under /_conveyor/, and the edge that journals and faults /3.0.

Present only in emulate mode, or on a normal server with `CONVEYOR_ADMIN_TOKEN` (then every
control needs it as a Bearer token). docs/emulator.md describes each control.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.domain import problems
from conveyor.domain.accounts import Account
from conveyor.domain.problems import FieldError, Problem
from conveyor.domain.steps import FollowUp
from conveyor.emulator.controls import TestControls
from conveyor.emulator.faults import FaultBook, parse_fault
from conveyor.emulator.journal import MAX_BODY_BYTES, JournalQuery, decoded_body, iso_with_ms
from conveyor.emulator.pace import parse_pace
from conveyor.http.auth import KeyCache, credential_from_header
from conveyor.http.gate import ApiGate, new_request_id
from conveyor.http.problems import problem_for
from conveyor.http.responses import problem_response, reply_response
from conveyor.settings import Settings
from conveyor.storage.accounts import AccountStore

PREFIX = "/_conveyor"
Dispatch = Callable[[Iterable[FollowUp]], None]


class TestControlEndpoints:
    __test__ = False

    def __init__(
        self,
        settings: Settings,
        gate: ApiGate,
        controls: TestControls,
        accounts: AccountStore,
        dispatch: Dispatch,
    ) -> None:
        self.settings = settings
        self.gate = gate
        self.controls = controls
        self.accounts = accounts
        self.dispatch = dispatch

    def routes(self) -> list[Route]:
        return [
            Route(f"{PREFIX}/reset", self._guard(self.reset), methods=["POST"]),
            Route(f"{PREFIX}/fixtures", self._guard(self.fixtures), methods=["POST"]),
            Route(f"{PREFIX}/requests", self._guard(self.requests), methods=["GET", "DELETE"]),
            Route(f"{PREFIX}/faults", self._guard(self.faults), methods=["GET", "POST", "DELETE"]),
            Route(f"{PREFIX}/clock", self._guard(self.clock), methods=["GET", "POST"]),
            Route(f"{PREFIX}/pace", self._guard(self.pace), methods=["GET", "POST"]),
        ]

    # --- the guard -------------------------------------------------------------------------

    def _guard(
        self, handler: Callable[[Request], Awaitable[tuple[int, Any]]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            request_id = new_request_id()
            try:
                self._check_admin(request)
                status, body = await handler(request)
            except Exception as exc:
                problem = problem_for(exc) or problems.internal_error()
                return problem_response(problem, request_id)
            return reply_response(status, body, request_id)

        return endpoint

    def _check_admin(self, request: Request) -> None:
        if self.settings.emulate:
            return
        token = self.settings.admin_token or ""
        given = credential_from_header(request.headers.get("authorization")) or ""
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            raise Problem(
                401,
                "Unauthorized",
                "The test controls need the admin token (CONVEYOR_ADMIN_TOKEN) as a Bearer token.",
            )

    async def _account(self, key: str | None, *, adopt: bool) -> Account:
        """The account of `key`; in emulate mode a well-formed new key gets one (`adopt`)."""
        if not key:
            raise problems.invalid_resource([FieldError("api_key", "An API key is required.")])
        if adopt:
            account = await anyio.to_thread.run_sync(self.gate.keys.resolve, key)
        else:
            account = await anyio.to_thread.run_sync(self._lookup, key)
        if account is None:
            raise problems.api_key_invalid()
        return account

    def _lookup(self, key: str) -> Account | None:
        with self.controls.database.read() as conn:
            return self.accounts.account_for_key(conn, key)

    # --- controls --------------------------------------------------------------------------

    async def reset(self, request: Request) -> tuple[int, Any]:
        key = request.query_params.get("api_key")
        account = await self._account(key, adopt=False) if key is not None else None
        wiped = await anyio.to_thread.run_sync(self.controls.reset, account)
        self.gate.keys.clear()
        return 200, {"accounts_removed": wiped.accounts}

    async def fixtures(self, request: Request) -> tuple[int, Any]:
        document = await self.gate.read_json_object(request) or {}
        key = document.get("api_key")
        account = await self._account(key if isinstance(key, str) else None, adopt=True)
        api_root = self.gate.api_root(request)
        loaded = await anyio.to_thread.run_sync(self.controls.load, account, document, api_root)
        return 200, loaded

    async def requests(self, request: Request) -> tuple[int, Any]:
        query = request.query_params
        key = query.get("api_key")
        account = await self._account(key, adopt=False) if key is not None else None
        journal = self.controls.state.journal
        if request.method == "DELETE":
            journal.clear(account.pk if account else None)
            return 204, None
        selected = journal.select(
            JournalQuery(
                method=query.get("method") or None,
                path=query.get("path") or None,
                since=_since(query.get("since")),
                account_pk=account.pk if account else None,
                batch_id=query.get("batch_id") or None,
            )
        )
        items = [entry.to_dict() for entry in selected]
        return 200, {"requests": items, "total_items": len(items)}

    async def faults(self, request: Request) -> tuple[int, Any]:
        book = self.controls.state.faults
        if request.method == "GET":
            rules = [rule.to_dict() for rule in book.rules()]
            return 200, {"faults": rules, "total_items": len(rules)}
        if request.method == "DELETE":
            book.clear()
            return 204, None
        spec = parse_fault(await self.gate.read_json_object(request) or {})
        account = await self._account(spec.api_key, adopt=True) if spec.api_key else None
        rule = book.add(spec, account.pk if account else None)
        return 200, rule.to_dict()

    async def clock(self, request: Request) -> tuple[int, Any]:
        if request.method == "POST":
            document = await self.gate.read_json_object(request) or {}
            seconds = document.get("advance")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise problems.invalid_resource(
                    [FieldError("advance", "Seconds to move virtual time forward, a number.")]
                )
            follow_ups = await anyio.to_thread.run_sync(self.controls.advance, float(seconds))
            self.dispatch(follow_ups)
        clock = self.controls.state.clock
        now = clock.now()
        return 200, {"now": iso_with_ms(now), "offset_seconds": round(now - time.time(), 3)}

    async def pace(self, request: Request) -> tuple[int, Any]:
        pace = self.controls.state.pace
        if request.method == "POST":
            pace.set(parse_pace(await self.gate.read_json_object(request) or {}))
        return 200, pace.spec.model_dump()


def _since(value: str | None) -> float | None:
    if not value:
        return None
    # An unencoded `+00:00` in a query string arrives as ` 00:00`.
    value = value.strip().replace(" ", "+")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        try:
            return float(value)
        except ValueError:
            raise problems.invalid_resource(
                [FieldError("since", "An ISO 8601 time (or seconds since the epoch).")]
            ) from None


class EmulatorEdge:
    """ASGI middleware for /3.0: answers HTTP fault rules and journals every request."""

    def __init__(self, app: ASGIApp, controls: TestControls, keys: KeyCache) -> None:
        self.app = app
        self.state = controls.state
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/3.0" or path.startswith("/3.0/")):
            await self.app(scope, receive, send)
            return
        state = self.state
        at = state.clock.now()
        method: str = scope["method"]
        key = _credential(scope)
        account_pk = self._cached_account(key)
        faults: FaultBook = state.faults
        if account_pk is None and key and faults.has_account_rules():
            # A rule for one account: who is asking must be known before the fault fires.
            account = await anyio.to_thread.run_sync(self.keys.resolve, key)
            account_pk = account.pk if account is not None else None
        if faults.any_for("http", account_pk):
            firing = faults.fire("http", account_pk, method, path)
            if firing is not None:
                if firing.delay_seconds:
                    await anyio.sleep(firing.delay_seconds)
                if firing.problem is not None:
                    body = await _read_all(receive)
                    request_id = new_request_id()
                    await problem_response(firing.problem, request_id)(scope, receive, send)
                    self._record(scope, body, firing.problem.status, request_id, at, account_pk)
                    return
        captured: list[bytes] = []
        size = 0

        async def teeing_receive() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                size += len(chunk)
                if size <= MAX_BODY_BYTES:
                    captured.append(chunk)
            return message

        answered: dict[str, Any] = {"status": 500, "request_id": None}

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"x-request-id":
                        answered["request_id"] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, teeing_receive, watching_send)
        finally:
            recorded: Any = (
                decoded_body(b"".join(captured))
                if size <= MAX_BODY_BYTES
                else f"<{size} bytes, not kept>"
            )
            self.state.journal.record(
                method=method,
                path=path,
                query=_query(scope),
                body=recorded,
                status=int(answered["status"]),
                at=at,
                request_id=answered["request_id"],
                account_pk=account_pk if account_pk is not None else self._cached_account(key),
            )

    def _cached_account(self, key: str | None) -> int | None:
        if not key:
            return None
        known, account = self.keys.cached(key)
        return account.pk if known and account is not None else None

    def _record(
        self,
        scope: Scope,
        body: bytes,
        status: int,
        request_id: str,
        at: float,
        account_pk: int | None,
    ) -> None:
        self.state.journal.record(
            method=scope["method"],
            path=scope["path"],
            query=_query(scope),
            body=decoded_body(body),
            status=status,
            at=at,
            request_id=request_id,
            account_pk=account_pk,
        )


def _credential(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            return credential_from_header(value.decode("latin-1"))
    return None


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return dict(parse_qsl(raw, keep_blank_values=True))


async def _read_all(receive: Receive) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_BODY_BYTES:
            parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)
