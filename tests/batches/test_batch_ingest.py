"""Bad input at submission: a clear problem document, nothing stored, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.composition import Services
from conveyor.domain.clock import OffsetClock
from tests.batches.support import (
    account_batch_ids,
    assert_problem,
    drive,
    fetch_archive,
    get_batch,
    orphan_rows,
    submit,
)
from tests.conftest import ApiUser

OP = {"method": "GET", "path": "lists"}
GOOD = json.dumps(OP).encode()


def _ops(count: int) -> bytes:
    return b",".join([GOOD] * count)


def _post(api: ApiUser, content: bytes | Iterator[bytes]) -> Any:
    response = api.client.post(
        "/3.0/batches", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code < 500, response.text
    return response


@pytest.fixture
def nothing_stored(api: ApiUser, services: Services) -> Iterator[None]:
    """After the test: no batch row of the account, no rows without a batch."""
    yield
    assert account_batch_ids(services, api.account_id) == []
    assert orphan_rows(services) == {"batch_operations": 0, "batch_chunks": 0, "batch_results": 0}
    assert api.client.get("/3.0/batches").json()["total_items"] == 0


MALFORMED = {
    "empty": b"",
    "whitespace": b"   ",
    "open brace": b"{",
    "not json": b"operations=1",
    "truncated in operations": b'{"operations": [' + _ops(9),
    "truncated in a string": b'{"operations": [' + _ops(9) + b',{"method": "GE',
    "truncated after the array": b'{"operations": [' + _ops(9) + b"]",
    "trailing garbage": b'{"operations": [' + _ops(9) + b"]} x",
    "two documents": b'{"operations": []} {"operations": []}',
    "non-utf-8 in a string": b'{"operations": ['
    + _ops(9)
    + b',{"method": "GET", "path": "l\xffsts"}]}',
    "non-utf-8 outside strings": b'{"operations": [' + _ops(9) + b"\xfe]}",
    "utf-16": '{"operations": []}'.encode("utf-16"),
    "latin-1 key": b'{"op\xe9rations": []}',
    "NaN": b'{"operations": [{"method": "GET", "path": "lists", "operation_id": NaN}]}',
    "huge number": b'{"operations": [{"method": "GET", "path": "lists", "operation_id": 1e999}]}',
    "single quotes": b"{'operations': []}",
    "comment": b'{"operations": [] /* x */}',
    "lone surrogate": b'{"operations": [{"method": "GET", "path": "x", "body": "\\udc00"}]}',
}


def test_malformed_json_is_400(api: ApiUser, nothing_stored: None) -> None:
    # One test over all the bodies: each case costs a request, not a fresh database.
    for name, body in MALFORMED.items():
        problem = assert_problem(_post(api, body), 400, "JSON Parse Exception")
        assert "JSON" in problem["detail"] or "empty" in problem["detail"], name


WRONG_SHAPE: dict[str, tuple[bytes, str | None]] = {
    "array": (b"[]", None),
    "string": (b'"operations"', None),
    "number": (b"5", None),
    "null": (b"null", None),
    "missing operations": (b"{}", "operations"),
    "other keys only": (b'{"ops": [], "x": {"operations": []}}', "operations"),
    "operations object": (b'{"operations": {"0": {}}}', "operations"),
    "operations string": (b'{"operations": "[]"}', "operations"),
    "operations null": (b'{"operations": null}', "operations"),
    "operations number": (b'{"operations": 3}', "operations"),
    "operations twice": (b'{"operations": [], "operations": []}', "operations"),
    "operation not an object": (b'{"operations": [' + _ops(5) + b", 7]}", "operations[5]"),
    "operation a list": (b'{"operations": [' + _ops(6) + b", []]}", "operations[6]"),
    "missing method": (
        b'{"operations": [' + _ops(5) + b',{"path": "lists"}]}',
        "operations[5].method",
    ),
    "null method": (
        b'{"operations": [' + _ops(5) + b',{"method": null, "path": "lists"}]}',
        "operations[5].method",
    ),
    "unknown method": (
        b'{"operations": [' + _ops(2) + b',{"method": "FETCH", "path": "lists"}]}',
        "operations[2].method",
    ),
    "numeric method": (b'{"operations": [{"method": 1, "path": "lists"}]}', "operations[0].method"),
    "missing path": (
        b'{"operations": [' + _ops(8) + b',{"method": "GET"}]}',
        "operations[8].path",
    ),
    "empty path": (b'{"operations": [{"method": "GET", "path": ""}]}', "operations[0].path"),
    "path object": (
        b'{"operations": [{"method": "GET", "path": {"a": 1}}]}',
        "operations[0].path",
    ),
    "body number": (
        b'{"operations": [{"method": "POST", "path": "lists", "body": 5}]}',
        "operations[0].body",
    ),
    "params list": (
        b'{"operations": [{"method": "GET", "path": "lists", "params": [1]}]}',
        "operations[0].params",
    ),
    "params nested": (
        b'{"operations": [{"method": "GET", "path": "lists", "params": {"a": {"b": 1}}}]}',
        "operations[0].params.a",
    ),
    "operation_id object": (
        b'{"operations": [{"method": "GET", "path": "lists", "operation_id": {}}]}',
        "operations[0].operation_id",
    ),
    "operation_id boolean": (
        b'{"operations": [{"method": "GET", "path": "lists", "operation_id": true}]}',
        "operations[0].operation_id",
    ),
}


def test_wrong_shape_is_400_naming_the_operation(api: ApiUser, nothing_stored: None) -> None:
    for name, (body, field) in WRONG_SHAPE.items():
        problem = assert_problem(_post(api, body), 400)
        assert problem["title"] == "Invalid Resource", (name, problem)
        if field is not None:
            assert problem["errors"][0]["field"] == field, (name, problem)
            assert field in problem["detail"], (name, problem)


def test_wrong_type_in_a_json_api_client(api: ApiUser, nothing_stored: None) -> None:
    response = api.client.post("/3.0/batches", json={"operations": [{"method": "GET"}] * 3})
    problem = assert_problem(response, 400)
    assert problem["errors"] == [
        {"field": "operations[0].path", "message": "operations[0].path is required"}
    ]


def test_failure_after_many_pages_leaves_nothing(
    api: ApiUser, services: Services, nothing_stored: None
) -> None:
    """Pages are stored as they arrive (4 operations each here); a late error removes them."""
    assert services.settings.batches.ingest_page_size == 4

    def body() -> Iterator[bytes]:
        yield b'{"operations": ['
        for _ in range(50):
            yield GOOD + b","
        yield b'{"method": "GET"}]}'

    problem = assert_problem(_post(api, body()), 400)
    assert problem["errors"][0]["field"] == "operations[50].path"


def test_a_page_the_database_refuses_fails_the_upload_and_leaves_nothing(
    api: ApiUser,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    nothing_stored: None,
) -> None:
    """Pages are written beside the parsing of the next ones; a write that fails ends the
    upload with that error (a 500, as any database failure), once the page in flight is
    done, and nothing of the batch stays."""
    store = services.batch_store
    real_insert = store.insert_operations
    written: list[int] = []

    def insert_operations(conn: Any, batch_id: str, first_seq: int, operations: Any) -> None:
        if first_seq >= 12:
            raise RuntimeError("the database refused the page")
        real_insert(conn, batch_id, first_seq, operations)
        written.append(first_seq)

    monkeypatch.setattr(store, "insert_operations", insert_operations)
    response = api.client.post("/3.0/batches", content=b'{"operations": [' + _ops(40) + b"]}")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert written == [0, 4, 8]
    # The error itself, not wrapped in an exception group by the writer's task group.
    [failure] = [record for record in caplog.records if record.exc_info]
    assert failure.exc_info is not None and failure.exc_info[0] is RuntimeError


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(count=st.integers(0, 26))
def test_every_operation_is_stored_in_order_whatever_the_pages(
    api: ApiUser, services: Services, count: int
) -> None:
    """Full pages (4 operations here) are written as they arrive, the rest goes in with the
    publish: all of them, once each, in submission order."""
    operations = [
        {"method": "GET", "path": "lists", "operation_id": f"op-{index}"} for index in range(count)
    ]
    batch = submit(api.client, operations)
    assert batch["total_operations"] == count
    with services.database.read() as conn:
        stored = services.batch_store.load_operations(conn, batch["id"], 0, count + 10)
    assert [op.operation_id for op in stored] == [f"op-{index}" for index in range(count)]


# --- deep nesting and big values ---------------------------------------------------------------

DEPTH = 20_000  # far past both orjson (255) and the recursion limit (1,000)


DEEP_ARRAY = b"[" * DEPTH + b"]" * DEPTH
DEEP = {
    "array body": (
        b'{"operations": [' + _ops(3) + b',{"method": "POST", "path": "lists", "body": '
        + DEEP_ARRAY + b"}]}",
        "operations[3].body",
    ),
    "object body": (
        b'{"operations": [{"method": "POST", "path": "lists", "body": '
        + b'{"a":' * DEPTH + b"1" + b"}" * DEPTH + b"}]}",
        "operations[0].body",
    ),
    "operation": (b'{"operations": [' + DEEP_ARRAY + b"]}", "operations[0]"),
    "param": (
        b'{"operations": [{"method": "GET", "path": "lists", "params": {"a": '
        + DEEP_ARRAY + b"}}]}",
        "operations[0].params.a",
    ),
    "operation_id": (
        b'{"operations": [{"method": "GET", "path": "lists", "operation_id": '
        + DEEP_ARRAY + b"}]}",
        "operations[0].operation_id",
    ),
}  # fmt: skip


def test_deep_nesting_is_400(api: ApiUser, nothing_stored: None) -> None:
    for name, (body, field) in DEEP.items():
        problem = assert_problem(_post(api, body), 400)
        assert problem["errors"][0]["field"] == field, (name, problem)


def test_deep_nesting_elsewhere_is_skipped(api: ApiUser, services: Services) -> None:
    body = b'{"x": ' + b"[" * DEPTH + b"]" * DEPTH + b', "operations": [' + GOOD + b"]}"
    response = _post(api, body)
    assert response.status_code == 200, response.text
    assert response.json()["total_operations"] == 1


def test_moderately_nested_body_is_kept(api: ApiUser, services: Services) -> None:
    """A body deeper than orjson writes (255) but still sane is accepted and run."""
    nested: Any = 1
    for _ in range(300):
        nested = {"a": nested}
    batch = submit(
        api.client,
        [{"method": "POST", "path": "lists", "body": nested, "operation_id": "deep"}],
    )
    drive(services, batch["id"])
    (result,) = fetch_archive(api.client, get_batch(api.client, batch["id"])).results
    assert result["status_code"] == 400


TEN_MB = 10 * 1024 * 1024


def test_ten_megabyte_strings(api: ApiUser, services: Services) -> None:
    """The parser takes ten megabytes in any string; one operation holds no more than one
    request may (docs/security.md), so such an operation refuses its batch, naming it."""
    big = "x" * TEN_MB
    # Outside the operations, a member the batch does not read is skipped whatever its size.
    small = {"method": "GET", "path": "lists", "operation_id": "small"}
    body = orjson.dumps({"operations": [small], "extra": big})
    response = _post(api, body)
    assert response.status_code == 200, response.text[:300]
    drive(services, response.json()["id"])
    assert get_batch(api.client, response.json()["id"])["finished_operations"] == 1
    for field, operation in [
        ("body", {"method": "POST", "path": "lists", "body": big}),
        ("path", {"method": "GET", "path": "lists/" + big}),
        ("operation_id", {"method": "GET", "path": "lists", "operation_id": "id-" + big}),
    ]:
        response = _post(api, orjson.dumps({"operations": [small, operation], "extra": big}))
        problem = assert_problem(response, 400)
        assert len(response.content) < 2_000  # named, not echoed
        assert problem["errors"][0]["field"] == f"operations[1].{field}", problem


def test_ten_megabyte_string_where_it_does_not_belong(api: ApiUser, nothing_stored: None) -> None:
    for field, value in [("method", "x" * TEN_MB), ("params", {"a": ["x" * TEN_MB, {}]})]:
        operation: dict[str, Any] = {"method": "GET", "path": "lists", field: value}
        response = _post(api, orjson.dumps({"operations": [operation]}))
        problem = assert_problem(response, 400)
        # The problem names the field; it does not echo ten megabytes back.
        assert len(response.content) < 2_000
        assert problem["errors"][0]["field"].startswith(f"operations[0].{field}"), problem


# --- caps ------------------------------------------------------------------------------------


@pytest.mark.batch_settings(max_operations=25)
def test_too_many_operations_is_413(api: ApiUser, nothing_stored: None) -> None:
    problem = assert_problem(
        _post(api, b'{"operations": [' + _ops(26) + b"]}"), 413, "Request Entity Too Large"
    )
    assert "25" in problem["detail"]


@pytest.mark.batch_settings(max_operations=25)
def test_exactly_the_cap_is_accepted(api: ApiUser) -> None:
    response = _post(api, b'{"operations": [' + _ops(25) + b"]}")
    assert response.status_code == 200
    assert response.json()["total_operations"] == 25


@pytest.mark.batch_settings(max_body_bytes=2_000)
def test_too_large_a_body_is_413(api: ApiUser, nothing_stored: None) -> None:
    body = b'{"operations": [' + _ops(100) + b"]}"
    assert len(body) > 2_000
    problem = assert_problem(_post(api, body), 413, "Request Entity Too Large")
    assert "2000" in problem["detail"]


@pytest.mark.batch_settings(max_body_bytes=2_000)
def test_too_large_a_streamed_body_is_413(api: ApiUser, nothing_stored: None) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"operations": ['
        for _ in range(100):
            yield GOOD + b","
        yield GOOD + b"]}"

    assert_problem(_post(api, body()), 413, "Request Entity Too Large")


def test_no_key_stores_nothing(api: ApiUser, nothing_stored: None) -> None:
    # auth=None: this request only, without the client's credentials.
    response = api.client.post("/3.0/batches", json={"operations": [OP]}, auth=None)  # type: ignore[arg-type]
    assert_problem(response, 401, "API Key Missing")
    response = api.client.post(
        "/3.0/batches", json={"operations": [OP]}, auth=("x", "f" * 32 + "-us1")
    )
    assert_problem(response, 401, "API Key Invalid")


def test_an_upload_purged_as_stale_is_refused_cleanly(
    api: ApiUser, services: Services, clock: OffsetClock, nothing_stored: None
) -> None:
    """The scheduler discards an upload that stopped moving; if its client then goes on,
    it gets a problem document (not a 500) and leaves nothing behind."""
    stale_after = services.settings.batches.stale_ingest_seconds

    def body() -> Iterator[bytes]:
        yield b'{"operations": [' + _ops(10) + b","
        # Between two pages: the scheduler's purge runs as if the upload had stalled.
        clock.advance(stale_after + 1)
        assert services.engine.purge_expired() == 1
        yield _ops(10) + b"]}"

    response = _post(api, body())
    assert_problem(response, 408, "Request Timeout")
