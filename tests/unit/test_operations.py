import asyncio
import io
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from conveyor.domain.operations import (
    InvalidBatchBody,
    MalformedJson,
    Operation,
    TooManyOperations,
    _Pipeline,
    _references_to_finished_element,
    aiter_operations,
    iter_operations,
    parse_operation,
)


def _parse(body: object, max_operations: int = 100) -> list[Operation]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return list(iter_operations(io.BytesIO(data), max_operations=max_operations))


def _error(body: object, max_operations: int = 100) -> InvalidBatchBody:
    with pytest.raises(InvalidBatchBody) as info:
        _parse(body, max_operations)
    return info.value


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        yield b""  # empty chunks from the server must not read as the end of the body


async def _collect(data: bytes, size: int, max_operations: int) -> list[Operation]:
    return [op async for op in aiter_operations(_chunks(data, size), max_operations=max_operations)]


def test_normalizes_one_operation() -> None:
    [op] = _parse(
        {
            "operations": [
                {
                    "method": "put",
                    "path": "lists/abc/members/x",
                    "params": {"fields": ["id", "email"], "skip": True, "count": 10, "n": None},
                    "body": {"email_address": "a@example.com", "merge_fields": {"N": 1.5}},
                    "operation_id": 42,
                }
            ]
        }
    )
    assert op == Operation(
        method="PUT",
        path="lists/abc/members/x",
        params={"fields": "id,email", "skip": "true", "count": "10"},
        body='{"email_address":"a@example.com","merge_fields":{"N":1.5}}',
        operation_id="42",
    )


def test_body_string_is_kept_verbatim_even_if_not_json() -> None:
    ops = _parse(
        {
            "operations": [
                {"method": "POST", "path": "/lists", "body": '{ "name" : "x" }'},
                {"method": "POST", "path": "/lists", "body": "not json"},
                {"method": "PATCH", "path": "/lists/a", "body": [1, 2]},
                {"method": "GET", "path": "/lists", "body": None, "params": None},
            ]
        }
    )
    assert [op.body for op in ops] == ['{ "name" : "x" }', "not json", "[1,2]", None]
    assert ops[3].params == {}
    assert ops[3].operation_id is None


def test_path_is_not_validated_here() -> None:
    [op] = _parse({"operations": [{"method": "GET", "path": "http://evil"}]})
    assert op.path == "http://evil"


def test_other_keys_are_ignored_and_order_kept() -> None:
    body = (
        b'{"before": {"operations": 1, "x": [[{}]]}, "operations.item": [{"a": 1}],'
        b' "operations": [{"method": "GET", "path": "/a"}, {"method": "DELETE", "path": "/b"}],'
        b' "after": [1, {"y": null}]}'
    )
    assert [(op.method, op.path) for op in _parse(body)] == [("GET", "/a"), ("DELETE", "/b")]


def test_empty_operations_is_fine() -> None:
    assert _parse({"operations": []}) == []


@pytest.mark.parametrize(
    ("item", "detail", "field"),
    [
        ({"path": "/lists"}, "operations[3].method is required", "operations[3].method"),
        (
            {"method": None, "path": "/x"},
            "operations[3].method is required",
            "operations[3].method",
        ),
        (
            {"method": "FETCH", "path": "/lists"},
            "operations[3].method must be one of GET, POST, PUT, PATCH, DELETE",
            "operations[3].method",
        ),
        (
            {"method": 1, "path": "/lists"},
            "operations[3].method must be one of GET, POST, PUT, PATCH, DELETE",
            "operations[3].method",
        ),
        ({"method": "GET"}, "operations[3].path is required", "operations[3].path"),
        (
            {"method": "GET", "path": ""},
            "operations[3].path must be a non-empty string",
            "operations[3].path",
        ),
        (
            {"method": "GET", "path": 5},
            "operations[3].path must be a non-empty string",
            "operations[3].path",
        ),
        (
            {"method": "GET", "path": "/x", "params": []},
            "operations[3].params must be an object",
            "operations[3].params",
        ),
        (
            {"method": "GET", "path": "/x", "params": {"a": {"b": 1}}},
            "operations[3].params.a must be a string, number, boolean or a list of those",
            "operations[3].params.a",
        ),
        (
            {"method": "POST", "path": "/x", "body": 5},
            "operations[3].body must be a JSON-encoded string, an object or an array",
            "operations[3].body",
        ),
        (
            {"method": "GET", "path": "/x", "operation_id": True},
            "operations[3].operation_id must be a string or a number",
            "operations[3].operation_id",
        ),
        ("GET /x", "operations[3] must be an object", "operations[3]"),
    ],
)
def test_invalid_operation_names_the_index(item: object, detail: str, field: str) -> None:
    good = {"method": "GET", "path": "/lists"}
    error = _error({"operations": [good, good, good, item, good]})
    assert (error.detail, error.field, error.index) == (detail, field, 3)
    assert str(error) == detail
    with pytest.raises(InvalidBatchBody):
        parse_operation(item, 3)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "The request body is empty."),
        (b"{", "The request body is not valid JSON: "),
        (b'{"operations": [}', "The request body is not valid JSON: "),
        (b"{'operations': []}", "The request body is not valid JSON: "),
        (b'{"operations": []} []', "The request body is not valid JSON: "),
        (b'{"operations": ["\xff"]}', "The request body is not valid JSON: "),
        (b"[]", "The request body must be a JSON object."),
        (b'"operations"', "The request body must be a JSON object."),
        (b"{}", "operations is required"),
        (b'{"ops": []}', "operations is required"),
        (b'{"operations": {}}', "operations must be an array"),
        (b'{"operations": null}', "operations must be an array"),
        (b'{"operations": "[]"}', "operations must be an array"),
        (b'{"operations": [], "operations": []}', "operations must appear only once"),
    ],
)
def test_malformed_bodies(body: bytes, detail: str) -> None:
    error = _error(body)
    assert error.detail.startswith(detail)
    assert error.index is None
    assert "\n" not in error.detail


def test_too_many_operations() -> None:
    ops = [{"method": "GET", "path": f"/lists/{i}"} for i in range(4)]
    assert len(_parse({"operations": ops}, max_operations=4)) == 4
    error = _error({"operations": ops}, max_operations=3)
    assert isinstance(error, TooManyOperations)
    assert error.index == 3
    assert "3" in error.detail


def test_too_many_is_raised_while_streaming() -> None:
    body = orjson.dumps({"operations": [{"method": "GET", "path": "/x"}] * 10})
    seen: list[Operation] = []
    with pytest.raises(TooManyOperations):
        seen.extend(iter_operations(io.BytesIO(body), max_operations=5))
    assert len(seen) == 5


def test_max_operations_must_be_positive() -> None:
    with pytest.raises(ValueError):
        _parse({"operations": []}, max_operations=0)


def _mixed_body(n: int) -> bytes:
    ops: list[dict[str, object]] = []
    for i in range(n):
        ops.append(
            {
                "method": ["get", "POST", "Put", "patch", "DELETE"][i % 5],
                "path": f"/lists/abc/members/{i:032x}",
                "params": {"count": i, "fields": ["a", "b"]} if i % 2 else None,
                "body": {"email_address": f"é{i}@example.com", "n": i / 3} if i % 3 else "{}",
                "operation_id": [f"op-{i}", i, None][i % 3],
            }
        )
    return orjson.dumps({"meta": {"k": [1, 2]}, "operations": ops, "tail": "x"})


def test_async_parser_in_tiny_chunks_matches_sync() -> None:
    body = _mixed_body(300)
    expected = list(iter_operations(io.BytesIO(body), max_operations=1_000))
    assert len(expected) == 300
    assert asyncio.run(_collect(body, 7, 1_000)) == expected
    assert asyncio.run(_collect(body, len(body), 1_000)) == expected


def test_async_parser_reports_the_same_errors() -> None:
    with pytest.raises(InvalidBatchBody, match="not valid JSON"):
        asyncio.run(_collect(b'{"operations": [{"method": "GET", "path": "/x"},', 7, 10))
    with pytest.raises(TooManyOperations):
        asyncio.run(_collect(_mixed_body(5), 7, 4))
    with pytest.raises(InvalidBatchBody, match=r"operations\[0\]\.method"):
        asyncio.run(_collect(b'{"operations": [{"path": "/x"}]}', 7, 10))
    with pytest.raises(InvalidBatchBody, match="empty"):
        asyncio.run(_collect(b"", 7, 10))


def test_one_large_chunk() -> None:
    body = _mixed_body(3_000)
    assert len(body) > 3 * 64 * 1024
    assert len(asyncio.run(_collect(body, len(body), 10_000))) == 3_000


def test_memory_stays_flat() -> None:
    # Long bodies make a large request out of few events: tracing costs per allocation.
    note = "x" * 2_000
    ops = [{"method": "POST", "path": f"/lists/{i}", "body": {"note": note}} for i in range(4_000)]
    fileobj = io.BytesIO(orjson.dumps({"operations": ops}))
    del ops
    assert len(fileobj.getbuffer()) > 8_000_000
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_operations(fileobj, max_operations=4_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 4_000
    assert peak < 1024 * 1024, peak


def test_an_escaped_lone_surrogate_is_malformed_json() -> None:
    # ijson raised UnicodeDecodeError here, which reached the client as a 500.
    for body in (b'{"operations": [{"method": "GET", "path": "\\udc00"}]}', b'{"\\udc00": 1}'):
        error = _error(body)
        assert isinstance(error, MalformedJson)
        assert error.detail.startswith("The request body is not valid JSON: ")
    # A high surrogate alone becomes "?" in yajl, as it always did; a pair is one character.
    [op] = _parse(b'{"operations": [{"method": "GET", "path": "\\ud800\\udc00\\ud800x"}]}')
    assert op.path == "\U00010000?x"


@pytest.mark.parametrize("slice_bytes", [1, 5, 64 * 1024])
def test_an_operation_complete_before_the_body_breaks_is_reported(slice_bytes: int) -> None:
    """As before: an operation that ended before a syntax error names its own fault."""
    body = b'{"operations": [{"method": "GET", "path": "/x"}, {"path": "/y"}]'
    pipeline = _Pipeline(10, slice_bytes=slice_bytes, max_slice_bytes=slice_bytes)
    seen: list[Operation] = []
    with pytest.raises(InvalidBatchBody) as info:
        seen.extend(pipeline.feed(body))
        seen.extend(pipeline.close())
    assert (info.value.field, info.value.index) == ("operations[1].method", 1)
    assert [op.path for op in seen] == ["/x"]
    # Not complete: the syntax error it is.
    with pytest.raises(MalformedJson):
        _parse(b'{"operations": [{"method": "GET", "path": "/x"}, {"path": "/y"')


def test_open_operations_are_told_from_finished_ones() -> None:
    """What tells an operation that has ended from one still being built holds for the
    installed ijson (otherwise each one waits for the next to start)."""
    assert _references_to_finished_element() is not None


def test_ignored_members_do_not_pile_up_in_memory() -> None:
    note = "x" * 2_000
    members = {"before": [note] * 4_000, "after": {f"k{i}": note for i in range(4_000)}}
    body = orjson.dumps({**members, "operations": [{"method": "GET", "path": "/a"}]})
    fileobj = io.BytesIO(body)
    del members, body
    tracemalloc.start()
    try:
        [op] = iter_operations(fileobj, max_operations=10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert op.path == "/a"
    assert peak < 1024 * 1024, peak


class _CountingParser:
    def __init__(self, parser: Any) -> None:
        self.parser = parser
        self.sends = 0

    def send(self, piece: bytes) -> None:
        self.sends += 1
        self.parser.send(piece)

    def close(self) -> None:
        self.parser.close()


def test_a_long_string_is_sent_in_growing_slices() -> None:
    """yajl re-scans a token that spans sends from its start: a 10 MB string sent 64 KiB at a
    time costs quadratic time, so the slices grow while nothing completes."""
    big = "x" * (10 * 1024 * 1024)
    body = orjson.dumps({"operations": [{"method": "POST", "path": "/x", "body": big}] * 2})
    pipeline = _Pipeline(10)
    counting = _CountingParser(pipeline._parser)
    pipeline._parser = counting
    operations = [*pipeline.feed(body), *pipeline.close()]
    assert [op.body for op in operations] == [big, big]
    assert counting.sends < 40, counting.sends  # 64 KiB slices would take 320
