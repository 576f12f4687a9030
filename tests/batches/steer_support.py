"""Helpers for the tests of Conveyor's batch extensions: the operations view, NDJSON results,
retry, cancel, live progress events, idempotent submit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import httpx2
from httpx_sse import EventSource
from sqlalchemy import and_, select

from conveyor.composition import Services
from conveyor.domain.stored_response import expand
from conveyor.storage.tables import batch_operations, batch_results
from tests.batches.support import JSON_TYPE, Archive, response_of

NDJSON_TYPE = "application/x-ndjson"
ITEM_KEYS = [
    "seq",
    "page",
    "operation_id",
    "method",
    "path",
    "status",
    "status_code",
    "response",
]


def operations_page(client: httpx2.Client, batch_id: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/3.0/batches/{batch_id}/operations", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON_TYPE
    body: dict[str, Any] = response.json()
    if "fields" not in params and "exclude_fields" not in params:
        assert set(body) == {"batch_id", "operations", "total_items", "_links"}, body
        for item in body["operations"]:
            assert list(item) == ITEM_KEYS, item
            assert (item["status_code"] is None) == (item["status"] == "pending"), item
    return body


def all_operations(client: httpx2.Client, batch_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of the view, page by page (count 1000)."""
    items: list[dict[str, Any]] = []
    while True:
        page = operations_page(client, batch_id, count=1000, offset=len(items), **params)
        items.extend(page["operations"])
        if not page["operations"] or len(items) >= page["total_items"]:
            assert len(items) == page["total_items"]
            return items


def ndjson_lines(client: httpx2.Client, batch_id: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"/3.0/batches/{batch_id}/results.ndjson", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == NDJSON_TYPE
    text = response.text
    assert text == "" or text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        assert list(line) == ["operation_id", "status_code", "response"], line
    return lines


def archive_as_lines(archive: Archive) -> list[dict[str, Any]]:
    """The archive's records in the NDJSON form: the response decoded, null for empty."""
    return [
        {
            "operation_id": record["operation_id"],
            "status_code": record["status_code"],
            "response": response_of(record),
        }
        for record in archive.results
    ]


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any]


def read_events(response: httpx2.Response | httpx.Response) -> list[Event]:
    """The server-sent events of a whole (ended) stream."""
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    source = EventSource(cast(httpx.Response, response))
    return [Event(sse.event, sse.json()) for sse in source.iter_sse()]


def plain_view(services: Services, batch_id: str) -> list[dict[str, Any]]:
    """The operations view computed the plain way: every operation joined to its results in
    Python, straight from the tables (what the indexed paths must agree with)."""
    with services.database.read() as conn:
        operations = conn.execute(
            select(
                batch_operations.c.seq,
                batch_operations.c.operation_id,
                batch_operations.c.method,
                batch_operations.c.path,
            )
            .where(batch_operations.c.batch_id == batch_id)
            .order_by(batch_operations.c.seq)
        ).all()
        results = conn.execute(
            select(
                batch_results.c.seq,
                batch_results.c.page,
                batch_results.c.status_code,
                batch_results.c.response,
            )
            .where(and_(batch_results.c.batch_id == batch_id))
            .order_by(batch_results.c.seq, batch_results.c.page)
        ).all()
    by_seq: dict[int, list[Any]] = {}
    for row in results:
        by_seq.setdefault(row.seq, []).append(row)
    items: list[dict[str, Any]] = []
    for op in operations:
        ran = by_seq.get(op.seq)
        for row in ran or [None]:
            code = None if row is None else row.status_code
            items.append(
                {
                    "seq": op.seq,
                    "page": 0 if row is None else row.page,
                    "operation_id": op.operation_id,
                    "method": op.method,
                    "path": op.path,
                    "status": _status(code),
                    "status_code": code,
                    # As stored: member answers without their links (domain/stored_response.py).
                    "response": json.loads(expand(row.response)) if row and row.response else None,
                }
            )
    return items


def _status(code: int | None) -> str:
    if code is None:
        return "pending"
    return "succeeded" if 200 <= code <= 299 else "failed"


def invalid_member_posts(
    list_id: str, count: int, *, prefix: str = "bad"
) -> Iterator[dict[str, Any]]:
    for i in range(count):
        yield {
            "method": "POST",
            "path": f"lists/{list_id}/members",
            "operation_id": f"{prefix}-{i}",
            "body": json.dumps(
                {"email_address": f"{prefix}{i}-not-an-address", "status": "subscribed"}
            ),
        }
