"""One route table for every operation, callable with or without HTTP.

`invoke()` is the direct call of docs/architecture.md decision 3: method, path, query, body,
account and connection in; status and body out. The HTTP adapter and the batch executor are
both thin callers of it, so an operation behaves the same whichever way it arrives.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection

from conveyor.domain import problems
from conveyor.domain.accounts import Account
from conveyor.domain.clock import Clock
from conveyor.domain.field_selection import (
    FieldSelectionError,
    apply_field_selection,
    check_field_selection,
)
from conveyor.domain.problems import FieldError, Problem
from conveyor.storage.errors import is_foreign_key_violation
from conveyor.storage.marketing_stores import MarketingStores

log = logging.getLogger("conveyor.operations")

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(slots=True)
class Call:
    """Everything a handler may look at. The connection belongs to the caller."""

    conn: Connection
    account: Account
    method: str
    path_params: dict[str, str]
    query: Mapping[str, str]
    body: bytes | str | None
    api_root: str
    stores: MarketingStores

    @property
    def clock(self) -> Clock:
        return self.stores.clock

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object; an absent body is an empty object."""
        if self.body is None or self.body in (b"", ""):
            return {}
        try:
            value = orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise problems.json_parse_error() from exc
        if not isinstance(value, dict):
            raise problems.invalid_resource(
                [problems.FieldError("", "The request body must be a JSON object.")],
                "The resource submitted could not be validated: the body must be an object.",
            )
        # NUL can only arrive escaped (`\\u0000`): one substring scan in the common case.
        if _may_hold_nul(self.body):
            _reject_nul(value)
        return value


def _reject_nul_in_query(query: Mapping[str, str]) -> None:
    """Refuse NUL characters in query values, as in bodies: a filter (`type`, `status`...)
    reaches SQL as a parameter, and PostgreSQL fails on NUL in text (a 500) where SQLite
    only matched nothing."""
    for name, value in query.items():
        if "\x00" in value:
            raise problems.invalid_resource(
                [problems.FieldError(name, "This value must not contain NUL characters.")]
            )


def _may_hold_nul(body: bytes | str) -> bool:
    if isinstance(body, bytes):
        return b"\\u0000" in body
    return "\\u0000" in body


def _reject_nul(value: Any) -> None:
    """Refuse NUL characters anywhere in a body: PostgreSQL cannot store them in text, and
    accepting them only on SQLite would make the two databases disagree. Iterative: bodies
    may nest as deep as the parser allows, deeper than Python's recursion limit."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise problems.invalid_resource(
                    [problems.FieldError(where, "This value must not contain NUL characters.")]
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{where}.{key}" if where else str(key)
                stack += [(name, key), (name, child)]
        elif isinstance(item, list):
            stack += [(f"{where}.{i}" if where else str(i), child) for i, child in enumerate(item)]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any = None
    # HTTP headers of the answer (`Allow` on a 405); a batch result carries none.
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Call], Reply]


@dataclass
class _Route:
    pattern: str
    segments: tuple[str, ...]
    handlers: dict[str, Handler] = field(default_factory=dict)
    # (position, text) of the literal segments and (position, name) of the placeholders:
    # a path naming a member is matched once per operation, mostly never seen before.
    literals: tuple[tuple[int, str], ...] = field(init=False)
    placeholders: tuple[tuple[int, str], ...] = field(init=False)

    def __post_init__(self) -> None:
        self.literals = tuple((i, s) for i, s in enumerate(self.segments) if not s.startswith("{"))
        self.placeholders = tuple(
            (i, s[1:-1]) for i, s in enumerate(self.segments) if s.startswith("{")
        )


@dataclass
class RouteTable:
    """Routes to handlers; the table that `invoke` runs also holds the stores they use."""

    stores: MarketingStores | None = None
    _by_length: dict[int, list[_Route]] = field(default_factory=dict)
    # Path → its route and parameters: a batch group sends the same path hundreds of times.
    _resolved: dict[str, tuple[_Route | None, dict[str, str]]] = field(
        default_factory=dict, repr=False
    )

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._resolved.clear()
        segments = tuple(s for s in pattern.strip("/").split("/") if s)
        routes = self._by_length.setdefault(len(segments), [])
        for route in routes:
            if route.segments == segments:
                route.handlers[method] = handler
                return
        routes.append(_Route(pattern, segments, {method: handler}))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(method, pattern, handler)
            return handler

        return register

    def include(self, other: RouteTable) -> None:
        for routes in other._by_length.values():
            for route in routes:
                for method, handler in route.handlers.items():
                    self.add(method, route.pattern, handler)

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        if "\x00" in path:  # no id holds one, and PostgreSQL refuses it as a parameter
            raise problems.not_found()
        found = self._resolved.get(path)
        if found is None:
            found = self._best([s for s in path.strip("/").split("/") if s])
            if len(self._resolved) >= 4096:  # paths naming members are mostly seen once
                self._resolved.clear()
            self._resolved[path] = found
        best, params = found
        if best is None:
            raise problems.not_found()
        handler = best.handlers.get(method)
        if handler is None:
            raise problems.method_not_allowed(best.handlers)
        return handler, dict(params)  # the caller's own copy

    def _best(self, parts: list[str]) -> tuple[_Route | None, dict[str, str]]:
        best: _Route | None = None
        best_params: dict[str, str] = {}
        for route in self._by_length.get(len(parts), ()):
            params = _match(route, parts)
            if params is None:
                continue
            # A literal segment beats a placeholder (e.g. `actions/delete-permanent`).
            if best is None or len(route.literals) > len(best.literals):
                best, best_params = route, params
        return best, best_params

    def template_of(self, path: str) -> str | None:
        """The route pattern `path` falls in (`/lists/{list_id}`), None when none: a label
        for metrics and logs that never holds an id. Reads the cache `resolve` filled."""
        found = self._resolved.get(path)
        if found is None:
            found = self._best([s for s in path.strip("/").split("/") if s])
        route = found[0]
        return route.pattern if route is not None else None

    def patterns(self) -> list[tuple[str, list[str]]]:
        """Every route pattern with its methods (for docs and checks of what is served)."""
        return [
            (route.pattern, sorted(route.handlers))
            for routes in self._by_length.values()
            for route in routes
        ]

    def may_be_collection(self, path: str) -> bool:
        """False for a path that names one resource (its route ends in a placeholder), so a
        batch GET of it needs no paging attempt; an unknown path answers True."""
        route, _params = self._best([s for s in path.strip("/").split("/") if s])
        if route is None:
            return True
        return bool(route.segments) and not route.segments[-1].startswith("{")


def _match(route: _Route, parts: list[str]) -> dict[str, str] | None:
    """The route's parameters in `parts` (as many as it has segments), None when a literal
    segment differs."""
    for i, literal in route.literals:
        if parts[i] != literal:
            return None
    return {name: parts[i] for i, name in route.placeholders}


def new_request_id() -> str:
    return str(uuid.uuid4())


def invoke(
    table: RouteTable,
    conn: Connection,
    account: Account,
    method: str,
    path: str,
    query: Mapping[str, str],
    body: bytes | str | None,
    *,
    api_root: str,
    request_id: str | None = None,
) -> Reply:
    """Run one operation on the caller's connection and answer (status, body).

    A problem, expected or not, becomes a problem document; the caller rolls back whatever a
    non-2xx operation wrote (a savepoint in a batch, the transaction over HTTP). Without a
    `request_id`, one is made only if a problem document needs it.
    """
    method = method.upper()
    assert table.stores is not None, "invoke needs a route table built with its stores"
    try:
        if query:
            _reject_nul_in_query(query)
        handler, params = table.resolve(method, path)
        reply = handler(Call(conn, account, method, params, query, body, api_root, table.stores))
    except Problem as problem:
        document = problem.to_document(request_id or new_request_id())
        return Reply(problem.status, document, problem.headers)
    except Exception as exc:
        if is_foreign_key_violation(exc):
            # What the operation wrote to was deleted by a concurrent request meanwhile.
            return Reply(404, problems.not_found().to_document(request_id or new_request_id()))
        request_id = request_id or new_request_id()
        log.exception("operation failed: request_id=%s %s %s", request_id, method, path)
        return Reply(500, problems.internal_error().to_document(request_id))
    if method == "GET" and ("fields" in query or "exclude_fields" in query):
        return select_fields(
            reply, query.get("fields"), query.get("exclude_fields"), request_id=request_id
        )
    return reply


def select_fields(
    reply: Reply, fields: str | None, exclude_fields: str | None, *, request_id: str | None = None
) -> Reply:
    """A successful answer cut down to `fields` / without `exclude_fields`; 422 Requested
    Fields Invalid when they name something the answer cannot hold, or both are given."""
    if not 200 <= reply.status < 300 or not isinstance(reply.body, dict):
        return reply
    try:
        check_field_selection(reply.body, fields, exclude_fields)
    except FieldSelectionError as exc:
        problem = problems.requested_fields_invalid([FieldError(exc.parameter, exc.message)])
        return Reply(problem.status, problem.to_document(request_id or new_request_id()))
    return Reply(
        reply.status, apply_field_selection(reply.body, fields, exclude_fields), reply.headers
    )
