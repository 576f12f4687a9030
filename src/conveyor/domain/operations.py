"""Batch operations: the normalized form and the streaming parser of a batch request body.

The body ``{"operations": [...]}`` can hold a million operations, so it is parsed as it
arrives: bytes are pushed into ijson's C parser a slice at a time, ijson's C builder assembles
the operations, and each one is validated and yielded as soon as it is complete. Memory stays
flat, bounded by one input slice and one operation (or, in a member other than
``operations``, the part still open), whatever the body's size. The sync and async entry
points share the same pipeline, so they accept and refuse exactly the same bodies.

The top level is checked by the object ijson's builder fills with the body's members
(:class:`_TopLevel`): it sees each member as its value starts, keeps none of them, and notes
the ``operations`` array so the pipeline can take its elements while the builder appends to
them. Only the top-level members reach Python code; everything below them is built in C.
"""

from __future__ import annotations

import functools
import itertools
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import ijson
import orjson

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_METHODS_TEXT = ", ".join(METHODS)
# The spellings clients send; anything else goes through `str.upper`, as it always did.
_CANONICAL_METHODS = {spelling: m for m in METHODS for spelling in (m, m.lower(), m.title())}
# ijson's own read size; also caps how much of one large async chunk is parsed at once.
_SLICE_BYTES = 64 * 1024
# yajl re-scans a token that spans sends from its start on every send, so a long string fed
# in 64 KiB slices costs time quadratic in its length (measured: 1.5 s for 10 MB, which ran
# on the event loop). While sends make no progress (no new operation or top-level member),
# the slice grows to the bytes sent since the last progress, which keeps the re-scans
# geometric; the cap bounds how much one send can build once the token ends.
_MAX_SLICE_BYTES = 8 * 1024 * 1024
# What yajl skips between tokens (JSON's four, and also \v and \f).
_JSON_WHITESPACE = b" \t\n\r\x0b\x0c"
_OPEN_BRACE = ord("{")
_OPEN_BRACKET = ord("[")

# The C backend by name: this module drives its coroutines directly (see `_Target`).
_YAJL2_C: Any = ijson.get_backend("yajl2_c")


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    # As sent: an unsafe path becomes a 400 *result* at execution time, not a request error.
    path: str
    params: dict[str, str]
    body: str | None
    operation_id: str | None


# A frozen dataclass's __init__ sets each field through object.__setattr__, which was a third
# of the cost of validating a typical operation; the slots' own setters do the same job.
_new_instance = object.__new__
_set_method, _set_path, _set_params, _set_body, _set_operation_id = (
    Operation.__dict__[field].__set__ for field in Operation.__slots__
)


def _new_operation(
    method: str, path: str, params: dict[str, str], body: str | None, operation_id: str | None
) -> Operation:
    operation: Operation = _new_instance(Operation)
    _set_method(operation, method)
    _set_path(operation, path)
    _set_params(operation, params)
    _set_body(operation, body)
    _set_operation_id(operation, operation_id)
    return operation


class InvalidBatchBody(ValueError):
    def __init__(self, detail: str, *, field: str | None = None, index: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.index = index


class TooManyOperations(InvalidBatchBody):
    pass


class MalformedJson(InvalidBatchBody):
    """The body is not JSON at all (as opposed to JSON of the wrong shape)."""


def _json_text(value: object, field: str, index: int) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        pass
    # orjson refuses integers beyond 64 bits, which are valid JSON, and nesting deeper than
    # 255 levels; the stdlib takes both, up to the interpreter's recursion limit. Past that
    # the body is refused: a RecursionError escaping here would be a 500.
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except RecursionError:
        raise InvalidBatchBody(f"{field} is nested too deeply", field=field, index=index) from None


def _scalar_param(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return None


def _parse_params(raw: object, field: str, index: int) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidBatchBody(f"{field} must be an object", field=field, index=index)
    params: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            # Clients build params from optional arguments and send unset ones as null.
            continue
        if isinstance(value, list):
            parts = [_scalar_param(item) for item in value]
            text = None if None in parts else ",".join(part for part in parts if part is not None)
        else:
            text = _scalar_param(value)
        if text is None:
            raise InvalidBatchBody(
                f"{field}.{key} must be a string, number, boolean or a list of those",
                field=f"{field}.{key}",
                index=index,
            )
        params[str(key)] = text
    return params


def _parse_body(raw: object, field: str, index: int) -> str | None:
    if raw is None or isinstance(raw, str):
        # A string is kept verbatim even if it is not JSON: that is a 400 result, later.
        return raw
    if isinstance(raw, dict | list):
        return _json_text(raw, field, index)
    raise InvalidBatchBody(
        f"{field} must be a JSON-encoded string, an object or an array", field=field, index=index
    )


def _parse_operation_id(raw: object, field: str, index: int) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return str(raw)
    raise InvalidBatchBody(f"{field} must be a string or a number", field=field, index=index)


def parse_operation(raw: object, index: int) -> Operation:
    """Validate one decoded item of ``operations``; errors name it as ``operations[index]``."""
    # The usual operation (method, path, a string body or none, no params) in a few checks;
    # every other one, valid or not, takes the full path below, which names what is wrong.
    if type(raw) is dict:
        method = raw.get("method")
        path = raw.get("path")
        if type(method) is str and type(path) is str and path and raw.get("params") is None:
            canonical = _CANONICAL_METHODS.get(method)
            body = raw.get("body")
            operation_id = raw.get("operation_id")
            if (
                canonical is not None
                and (body is None or type(body) is str)
                and (operation_id is None or type(operation_id) is str)
            ):
                return _new_operation(canonical, path, {}, body, operation_id)
    return _parse_operation_fully(raw, index)


def _parse_operation_fully(raw: object, index: int) -> Operation:
    name = f"operations[{index}]"
    if not isinstance(raw, dict):
        raise InvalidBatchBody(f"{name} must be an object", field=name, index=index)

    method = raw.get("method")
    field = f"{name}.method"
    if method is None:
        raise InvalidBatchBody(f"{field} is required", field=field, index=index)
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise InvalidBatchBody(f"{field} must be one of {_METHODS_TEXT}", field=field, index=index)

    path = raw.get("path")
    field = f"{name}.path"
    if path is None:
        raise InvalidBatchBody(f"{field} is required", field=field, index=index)
    if not isinstance(path, str) or not path:
        raise InvalidBatchBody(f"{field} must be a non-empty string", field=field, index=index)

    return _new_operation(
        method.upper(),
        path,
        _parse_params(raw.get("params"), f"{name}.params", index),
        _parse_body(raw.get("body"), f"{name}.body", index),
        _parse_operation_id(raw.get("operation_id"), f"{name}.operation_id", index),
    )


class _TopLevel:
    """The body's top-level object, as ijson's builder fills it, keeping none of its members.

    ijson sets each member here as soon as its value starts (a container is set empty, then
    filled), so the `operations` array is noted while it is still open and the pipeline takes
    its elements as they come. Members at any other depth never reach this class, so a
    top-level key such as "operations.item" cannot pass for the array. (Not a dict: ijson
    could then fill it through the dict API, around `__setitem__`.)
    """

    def __init__(self) -> None:
        self.operations: list[object] | None = None
        self.operations_seen = False
        # True once a later member started (or the body ended): the array is complete.
        self.operations_closed = False
        self.error: InvalidBatchBody | None = None
        self.members = 0
        self._skipped: dict[str, object] | list[object] | None = None

    def __setitem__(self, key: str, value: object) -> None:
        # Called from ijson's C code, which would lose an exception raised here: an error is
        # noted, for the pipeline to raise once the operations before it are through.
        self.members += 1
        if self.operations is not None:
            self.operations_closed = True
        if key != "operations":
            self._skipped = value if isinstance(value, dict | list) else None
            return
        if self.error is not None:
            return
        if self.operations_seen:
            self.error = InvalidBatchBody("operations must appear only once", field="operations")
        elif not isinstance(value, list):
            self.error = InvalidBatchBody("operations must be an array", field="operations")
        else:
            self.operations = value
        self.operations_seen = True

    def __getitem__(self, key: str) -> object:
        # Makes this a mapping to ijson's builder, which only ever sets members.
        raise KeyError(key)

    def skipped_size(self) -> int:
        return len(self._skipped) if self._skipped is not None else 0

    def drop_skipped(self) -> None:
        """Empty the ignored member being built, so that only its open part stays in memory."""
        if self._skipped is not None:
            self._skipped.clear()


class _Target:
    """A coroutine target in the form ijson's C-backend wrappers take: they pass on `send`.

    Given a C coroutine (or a list) as `send`, each stage calls the next one in C, without a
    tuple and a Python-level call per JSON event: `ijson.items_coro` chains the stages
    through bound methods instead and runs at about a third of the speed.
    """

    __slots__ = ("send",)

    def __init__(self, send: object) -> None:
        self.send = send


def _parser(top: _TopLevel, documents: list[object]) -> Any:
    """ijson's C chain: bytes to events, to prefixed events, to values built from the top.

    The first map it builds is the body's top-level object when the body is an object: that
    one is `top`; every other map is a plain dict. The finished top-level value goes to
    `documents`.
    """
    new_map: Callable[[], object] = functools.partial(
        next, itertools.chain((top,), map(dict, itertools.repeat(())))
    )
    builder = _YAJL2_C.items_basecoro(_Target(documents), "", map_type=new_map)
    events = _YAJL2_C.parse_basecoro(_Target(builder))
    return _YAJL2_C.basic_parse_basecoro(_Target(events), use_float=True)


def _references_to_last(elements: list[object]) -> int:
    last = elements[-1]
    return sys.getrefcount(last)


@functools.cache
def _references_to_finished_element() -> int | None:
    """How many references `_references_to_last` counts for a finished array element.

    ijson's builder holds each container it is still filling on its stack, so an open
    element has exactly one reference more. That tells an operation that is complete from
    one whose closing bracket is still to come, when nothing follows it yet in what was
    sent. This checks that it holds for the installed ijson (None when it does not: an
    element is then taken only once the next one starts or the array ends).
    """
    counts: dict[bytes, int] = {}
    for prefix in (b"[{}", b"[[1]", b"[{", b'[{"a":[', b"[[", b"[[{"):
        top: _TopLevel = _TopLevel()
        parser = _parser(top, [])
        parser.send(b'{"operations":' + prefix)
        if not top.operations:
            return None
        counts[prefix] = _references_to_last(top.operations)
    finished = counts[b"[{}"]
    if counts[b"[[1]"] != finished or any(
        counts[prefix] != finished + 1 for prefix in (b"[{", b'[{"a":[', b"[[", b"[[{")
    ):
        return None
    return finished


def _last_may_be_open(elements: list[object]) -> bool:
    # No reference to the element is kept here: it would be counted.
    if type(elements[-1]) not in (dict, list):
        return False  # scalars are appended whole
    finished = _references_to_finished_element()
    return finished is None or _references_to_last(elements) > finished


_LONE_SURROGATE = "The request body is not valid JSON: a string escapes a lone surrogate."


def _json_error_detail(exc: Exception) -> str:
    message = exc.args[0] if exc.args else ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    first_line = str(message).strip().splitlines()[0] if str(message).strip() else "unreadable"
    return f"The request body is not valid JSON: {first_line}"


class _Pipeline:
    """Bytes in, operations out; the one code path behind the sync and async parsers.

    Errors come in the order of the body: after each slice, the operations it completed are
    validated first, then the cap on their number, then what the top level got wrong (a
    second `operations` member, or one that is not an array, comes after the array).
    """

    def __init__(
        self,
        max_operations: int,
        *,
        slice_bytes: int = _SLICE_BYTES,
        max_slice_bytes: int = _MAX_SLICE_BYTES,
    ) -> None:
        if max_operations <= 0:
            raise ValueError(f"max_operations must be positive, got {max_operations}")
        self._max = max_operations
        self._top = _TopLevel()
        # Receives the finished top-level value: the body has ended (or is not an object).
        self._documents: list[object] = []
        self._parser = _parser(self._top, self._documents)
        self._first_byte: int | None = None
        self._count = 0  # operations validated so far: the index of the next one
        self._received = 0
        self._pending = bytearray()
        self._base_slice = slice_bytes
        self._max_slice = max_slice_bytes
        self._slice = slice_bytes
        self._quiet = 0  # bytes sent since the parser last made progress

    def feed(self, data: bytes) -> Iterator[Operation]:
        self._pending += data
        while len(self._pending) >= self._slice:
            yield from self._send(self._take(self._slice))

    def close(self) -> Iterator[Operation]:
        if self._pending:
            yield from self._send(self._take(len(self._pending)))
        if not self._received:
            raise MalformedJson("The request body is empty.")
        self._parse(None)
        yield from self._drain()
        if not self._top.operations_seen:
            raise InvalidBatchBody("operations is required", field="operations")

    def _take(self, size: int) -> bytes:
        piece = bytes(self._pending[:size])
        del self._pending[:size]
        return piece

    def _parse(self, piece: bytes | None) -> None:
        """Send a piece to the parser, or with None tell it the body has ended."""
        try:
            if piece is None:
                self._parser.close()
            else:
                self._parser.send(piece)
        except ijson.JSONError as exc:
            raise MalformedJson(_json_error_detail(exc)) from None
        except UnicodeDecodeError:
            # yajl checks the UTF-8 it reads but turns an escaped lone low surrogate ("\udc00")
            # into bytes that Python cannot decode.
            raise MalformedJson(_LONE_SURROGATE) from None

    def _progress(self) -> int:
        """Grows with each operation, top-level member or item of an ignored member begun."""
        top = self._top
        open_elements = len(top.operations) if top.operations is not None else 0
        return self._count + open_elements + top.members + top.skipped_size() + len(self._documents)

    def _send(self, piece: bytes) -> Iterator[Operation]:
        if self._first_byte is None and (significant := piece.lstrip(_JSON_WHITESPACE)):
            self._first_byte = significant[0]
        self._received += len(piece)
        before = self._progress()
        self._parse(piece)
        if self._progress() != before:
            self._quiet = 0
            self._slice = self._base_slice
        else:
            self._quiet += len(piece)
            self._slice = min(max(self._quiet, self._base_slice), self._max_slice)
        yield from self._drain()

    def _not_an_object(self) -> bool:
        # Known once the body's first event has come: an object's comes with its brace, an
        # array's with its bracket, a scalar's once it is whole (it is then the document).
        first = self._first_byte
        if first is None or first == _OPEN_BRACE:
            return False
        return first == _OPEN_BRACKET or bool(self._documents)

    def _drain(self) -> Iterator[Operation]:
        if self._not_an_object():
            raise InvalidBatchBody("The request body must be a JSON object.")
        top = self._top
        elements = top.operations
        if elements:
            started = self._count + len(elements)
            complete = len(elements)
            if not (top.operations_closed or self._documents) and _last_may_be_open(elements):
                complete -= 1
            complete = min(complete, self._max - self._count)
            ready = elements[:complete]
            del elements[:complete]
            for raw in ready:
                yield parse_operation(raw, self._count)
                self._count += 1
            if started > self._max:
                raise TooManyOperations(
                    f"A batch may hold at most {self._max} operations.",
                    field="operations",
                    index=self._max,
                )
        if top.error is not None:
            raise top.error
        top.drop_skipped()


def iter_operations(fileobj: BinaryIO, *, max_operations: int) -> Iterator[Operation]:
    """Yield the operations of a batch body read from ``fileobj``, in order, one at a time."""
    pipeline = _Pipeline(max_operations)
    while data := fileobj.read(_SLICE_BYTES):
        yield from pipeline.feed(data)
    yield from pipeline.close()


async def aiter_operations(
    chunks: AsyncIterator[bytes], *, max_operations: int
) -> AsyncIterator[Operation]:
    """Async twin of :func:`iter_operations` over a request body's chunks, with flat memory."""
    async for operations in aiter_operation_lists(chunks, max_operations=max_operations):
        for operation in operations:
            yield operation


async def aiter_operation_lists(
    chunks: AsyncIterator[bytes], *, max_operations: int
) -> AsyncIterator[list[Operation]]:
    """:func:`aiter_operations` a chunk's worth at a time: the operations each chunk completed.

    One async hand-off per chunk instead of one per operation, which was a fifth of the
    event loop's time on a large body. The order of errors is kept: the operations a chunk
    completed before an invalid one are yielded first, and the error is raised on the next
    step, as `aiter_operations` would raise it after them.
    """
    pipeline = _Pipeline(max_operations)
    async for data in chunks:
        operations, error = _completed(pipeline.feed(data))
        if operations:
            yield operations
        if error is not None:
            raise error
    operations, error = _completed(pipeline.close())
    if operations:
        yield operations
    if error is not None:
        raise error


def _completed(operations: Iterator[Operation]) -> tuple[list[Operation], Exception | None]:
    done: list[Operation] = []
    try:
        done.extend(operations)  # keeps what it took before an error
    except Exception as exc:
        return done, exc
    return done, None
