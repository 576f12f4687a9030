"""The batch body parser as it was before ijson's C builder took over: the reference.

It fed ijson's C tokenizer and assembled each operation from its events in Python, tracking
the depth so that only the top-level `operations` array counted. Kept, unchanged but for the
slice sizes being parameters, as what `conveyor.domain.operations` must stay equivalent to
(tests/unit/test_operations_equivalence.py) and as the baseline of bench/ingest.py. It
raises and returns the real module's types, so outcomes compare directly.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from enum import Enum, auto
from typing import BinaryIO

import ijson
import orjson
from ijson.utils import sendable_list

from conveyor.domain.operations import (
    InvalidBatchBody,
    MalformedJson,
    Operation,
    TooManyOperations,
)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_METHODS_TEXT = ", ".join(METHODS)
_SLICE_BYTES = 64 * 1024
_MAX_SLICE_BYTES = 8 * 1024 * 1024


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

    return Operation(
        method=method.upper(),
        path=path,
        params=_parse_params(raw.get("params"), f"{name}.params", index),
        body=_parse_body(raw.get("body"), f"{name}.body", index),
        operation_id=_parse_operation_id(raw.get("operation_id"), f"{name}.operation_id", index),
    )


class _State(Enum):
    START = auto()
    TOP = auto()
    OPERATIONS_VALUE = auto()
    ITEMS = auto()
    ITEM = auto()
    SKIP = auto()
    DONE = auto()


_OPENERS = frozenset({"start_map", "start_array"})
_CLOSERS = frozenset({"end_map", "end_array"})


class _Assembler:
    """Turns ijson basic events into operations, checking the body's outer shape.

    Depth is tracked here rather than matched on ijson prefixes, because a top-level key named
    e.g. "operations.item" would otherwise be taken for the operations array.
    """

    def __init__(self, max_operations: int) -> None:
        if max_operations <= 0:
            raise ValueError(f"max_operations must be positive, got {max_operations}")
        self._max = max_operations
        self._state = _State.START
        self._depth = 0
        self._count = 0
        self._seen_operations = False
        self._builder: ijson.ObjectBuilder | None = None

    def feed(self, events: list[tuple[str, object]]) -> Iterator[Operation]:
        for event, value in events:
            operation = self._event(event, value)
            if operation is not None:
                yield operation

    def finish(self) -> None:
        # ijson has already refused a truncated document, so only a non-object remains.
        if self._state is not _State.DONE:
            raise InvalidBatchBody("The request body must be a JSON object.")
        if not self._seen_operations:
            raise InvalidBatchBody("operations is required", field="operations")

    def _event(self, event: str, value: object) -> Operation | None:
        state = self._state
        if state is _State.ITEM:
            return self._item_event(event, value)
        if state is _State.SKIP:
            if event in _OPENERS:
                self._depth += 1
            elif event in _CLOSERS:
                self._depth -= 1
            if self._depth == 0:
                self._state = _State.TOP
            return None
        if state is _State.ITEMS:
            if event == "end_array":
                self._state = _State.TOP
                return None
            self._start_item()
            if event in _OPENERS:
                self._builder = ijson.ObjectBuilder()
                self._builder.event(event, value)
                self._depth = 1
                self._state = _State.ITEM
                return None
            return self._complete_item(value)
        if state is _State.TOP:
            if event == "end_map":
                self._state = _State.DONE
            elif value == "operations":
                if self._seen_operations:
                    raise InvalidBatchBody("operations must appear only once", field="operations")
                self._seen_operations = True
                self._state = _State.OPERATIONS_VALUE
            else:
                self._depth = 0
                self._state = _State.SKIP
            return None
        if state is _State.OPERATIONS_VALUE:
            if event != "start_array":
                raise InvalidBatchBody("operations must be an array", field="operations")
            self._state = _State.ITEMS
            return None
        if state is _State.START and event == "start_map":
            self._state = _State.TOP
            return None
        raise InvalidBatchBody("The request body must be a JSON object.")

    def _start_item(self) -> None:
        if self._count >= self._max:
            raise TooManyOperations(
                f"A batch may hold at most {self._max} operations.",
                field="operations",
                index=self._count,
            )

    def _item_event(self, event: str, value: object) -> Operation | None:
        assert self._builder is not None
        self._builder.event(event, value)
        if event in _OPENERS:
            self._depth += 1
        elif event in _CLOSERS:
            self._depth -= 1
            if self._depth == 0:
                item = self._builder.value
                self._builder = None
                self._state = _State.ITEMS
                return self._complete_item(item)
        return None

    def _complete_item(self, item: object) -> Operation:
        operation = parse_operation(item, self._count)
        self._count += 1
        return operation


def _json_error_detail(exc: Exception) -> str:
    message = exc.args[0] if exc.args else ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    first_line = str(message).strip().splitlines()[0] if str(message).strip() else "unreadable"
    return f"The request body is not valid JSON: {first_line}"


class Pipeline:
    """Bytes in, operations out; the one code path behind the sync and async parsers."""

    def __init__(
        self,
        max_operations: int,
        *,
        slice_bytes: int = _SLICE_BYTES,
        max_slice_bytes: int = _MAX_SLICE_BYTES,
    ) -> None:
        self._events: list[tuple[str, object]] = sendable_list()
        self._parser = ijson.basic_parse_coro(self._events, use_float=True)
        self._assembler = _Assembler(max_operations)
        self._received = 0
        self._pending = bytearray()
        self._base_slice = slice_bytes
        self._max_slice = max_slice_bytes
        self._slice = slice_bytes
        self._quiet = 0  # bytes sent since the parser last produced an event

    def feed(self, data: bytes) -> Iterator[Operation]:
        self._pending += data
        while len(self._pending) >= self._slice:
            yield from self._send(self._take(self._slice))

    def close(self) -> Iterator[Operation]:
        if self._pending:
            yield from self._send(self._take(len(self._pending)))
        if not self._received:
            raise MalformedJson("The request body is empty.")
        try:
            self._parser.close()
        except ijson.JSONError as exc:
            raise MalformedJson(_json_error_detail(exc)) from None
        yield from self._drain()
        self._assembler.finish()

    def _take(self, size: int) -> bytes:
        piece = bytes(self._pending[:size])
        del self._pending[:size]
        return piece

    def _send(self, piece: bytes) -> Iterator[Operation]:
        self._received += len(piece)
        try:
            self._parser.send(piece)
        except ijson.JSONError as exc:
            raise MalformedJson(_json_error_detail(exc)) from None
        if self._events:
            self._quiet = 0
            self._slice = self._base_slice
        else:
            self._quiet += len(piece)
            self._slice = min(max(self._quiet, self._base_slice), self._max_slice)
        yield from self._drain()

    def _drain(self) -> Iterator[Operation]:
        # The list is emptied before parsing resumes, so it holds one slice's events at most.
        events = self._events[:]
        del self._events[:]
        yield from self._assembler.feed(events)


def iter_operations(fileobj: BinaryIO, *, max_operations: int) -> Iterator[Operation]:
    """Yield the operations of a batch body read from ``fileobj``, in order, one at a time."""
    pipeline = Pipeline(max_operations)
    while data := fileobj.read(_SLICE_BYTES):
        yield from pipeline.feed(data)
    yield from pipeline.close()


async def aiter_operations(
    chunks: AsyncIterator[bytes], *, max_operations: int
) -> AsyncIterator[Operation]:
    """Async twin of :func:`iter_operations` over a request body's chunks, with flat memory."""
    pipeline = Pipeline(max_operations)
    async for data in chunks:
        for operation in pipeline.feed(data):
            yield operation
    for operation in pipeline.close():
        yield operation
