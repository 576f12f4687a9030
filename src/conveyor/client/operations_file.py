"""Operations from a file or stdin for ``conveyor batch submit``: a JSON document or JSON
lines, told apart by the file name or, for stdin and other names, by the content."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from typing import IO, Any

import click
import ijson
import orjson


def read_operations(path: str, fmt: str | None) -> Iterator[dict[str, Any]]:
    """The operations of a JSON document (``{"operations": [...]}`` or a bare array) or of
    JSON lines (one operation a line).

    ``.json`` and ``.jsonl``/``.ndjson`` say which; stdin and any other name are told apart by
    their content. Both are streamed: a million operations are never held in memory.
    """
    handle: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    count = 0
    try:
        skipped, first = _first_line(handle)
        chosen = fmt or _format_of(path, first)
        if chosen == "jsonl":
            items = _jsonl_items(itertools.chain([first], handle), path, skipped)
        else:
            items = _json_items(
                itertools.chain([first], iter(lambda: handle.read(65536), b"")), path
            )
        for count, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise click.BadParameter(f"operation {count} is not a JSON object", param_hint=path)
            yield item
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    if count == 0:
        raise click.BadParameter("holds no operations", param_hint=path)


def _first_line(handle: IO[bytes]) -> tuple[int, bytes]:
    """The first line that is not blank, and how many blank ones came before it."""
    skipped = 0
    while line := handle.readline():
        if line.strip():
            return skipped, line
        skipped += 1
    return skipped, b""


def _format_of(path: str, first_line: bytes) -> str:
    if path.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if path.endswith(".json"):
        return "json"
    # By content: a line that is a whole operation object starts JSON lines; anything else
    # (an array, {"operations": ...}, a document spread over lines) is one JSON document.
    try:
        value = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        return "json"
    return "jsonl" if isinstance(value, dict) and "operations" not in value else "json"


def _json_items(chunks: Iterator[bytes], path: str) -> Iterator[Any]:
    head = b""
    for chunk in chunks:
        head += chunk
        if head.strip():
            break
    stripped = head.lstrip()
    if not stripped:
        return
    prefix = "item" if stripped[:1] == b"[" else "operations.item"
    try:
        yield from ijson.items(_IterReader(itertools.chain([head], chunks)), prefix, use_float=True)
    except ijson.JSONError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=path) from None


def _jsonl_items(lines: Iterator[bytes], path: str, skipped: int) -> Iterator[Any]:
    for number, line in enumerate(lines, start=1 + skipped):
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise click.BadParameter(
                f"line {number} is not valid JSON: {exc}", param_hint=path
            ) from None


class _IterReader:
    """A ``read(n)`` over an iterator of byte chunks, which is all ijson needs."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data
