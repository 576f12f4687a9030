"""One operation sent the two ways the route table serves it: over HTTP, or inside a batch.

The fidelity tests (issue 15) are written once against `Caller` and run both ways
(`via` fixture in tests/api/conftest.py), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.testclient import TestClient

from tests.batches.support import fetch_archive, get_batch, response_of, submit

VIAS = ("http", "batch")


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    # HTTP headers; an operation inside a batch has none.
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self, status: int = 200) -> Any:
        assert self.status == status, (self.status, self.body)
        return self.body

    def problem(self, status: int, title: str | None = None) -> dict[str, Any]:
        assert self.status == status, (self.status, self.body)
        body = self.body
        assert isinstance(body, dict) and body["status"] == status, body
        if title is not None:
            assert body["title"] == title, body
        return body

    def error_fields(self) -> set[str]:
        return {error["field"] for error in self.body.get("errors", [])}


class Caller(Protocol):
    """`call(method, path, json=..., params=...)`; `path` is under /3.0, with a slash."""

    via: str

    def __call__(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Answer: ...


@dataclass
class HttpCaller:
    client: TestClient
    via: str = "http"

    def __call__(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Answer:
        response = self.client.request(method, "/3.0" + path, json=json, params=params)
        body = response.json() if response.content else None
        return Answer(response.status_code, body, response.headers)


@dataclass
class BatchCaller:
    """Each call is a batch of one operation, run by the embedded runtime to the end; a GET
    of a collection answers its first page (pass `count` to get one page only)."""

    client: TestClient
    join: Callable[[], None]
    via: str = "batch"

    def __call__(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Answer:
        return self.many([operation(method, path, json=json, params=params)])[0]

    def many(self, operations: list[dict[str, Any]]) -> list[Answer]:
        """One batch of several operations; their first results in submission order."""
        batch = submit(self.client, operations)
        self.join()
        done = get_batch(self.client, batch["id"])
        assert done["status"] == "finished", done
        results = fetch_archive(self.client, done).results
        by_seq: dict[str, Answer] = {}
        for result in results:
            key = result["operation_id"]
            if key not in by_seq:
                by_seq[key] = Answer(result["status_code"], response_of(result))
        return [by_seq[op["operation_id"]] for op in operations]


def operation(
    method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {"method": method, "path": path, "operation_id": _next_id()}
    if params:
        op["params"] = {k: _param(v) for k, v in params.items()}
    if json is not None:
        op["body"] = _dumps(json)
    return op


_COUNTER = [0]


def _next_id() -> str:
    _COUNTER[0] += 1
    return f"op-{_COUNTER[0]}"


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value)
