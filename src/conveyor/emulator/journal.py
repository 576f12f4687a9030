"""The journal of what the server received: every /3.0 request and every batch operation run.

A test asserts on it ("my app added these 3 members") instead of mocking its client. Kept in
memory, oldest first, bounded: a suite that never resets keeps the last `capacity` entries.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from conveyor.emulator.globs import matches

# A body bigger than this is journaled as a note of its size: a million-operation batch
# must not be copied into memory a second time.
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    method: str
    path: str
    query: Mapping[str, str]
    body: Any
    status: int
    request_id: str | None
    at: float
    batch_id: str | None = None
    operation_id: str | None = None
    # Whose request it was (not shown): for the `api_key=` filter and a per-account reset.
    account_pk: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "method": self.method,
            "path": self.path,
            "query": dict(self.query),
            "body": self.body,
            "status": self.status,
            "request_id": self.request_id,
            "time": iso_with_ms(self.at),
            "batch_id": self.batch_id,
            "operation_id": self.operation_id,
        }


def iso_with_ms(timestamp: float) -> str:
    """ISO 8601 with milliseconds: whole seconds could not tell a test's steps apart."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def decoded_body(raw: bytes | str | None) -> Any:
    """The body as JSON when it is JSON, else as text; None when there is none."""
    if raw is None or len(raw) == 0:
        return None
    if len(raw) > MAX_BODY_BYTES:
        return f"<{len(raw)} bytes, not kept>"
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


@dataclass(frozen=True)
class JournalQuery:
    method: str | None = None
    path: str | None = None  # a glob (emulator.globs)
    since: float | None = None  # epoch seconds, inclusive
    account_pk: int | None = None
    batch_id: str | None = None

    def admits(self, entry: Entry) -> bool:
        return (
            (self.method is None or entry.method == self.method.upper())
            and matches(self.path, entry.path)
            and (self.since is None or entry.at >= self.since)
            and (self.account_pk is None or entry.account_pk == self.account_pk)
            and (self.batch_id is None or entry.batch_id == self.batch_id)
        )


@dataclass
class Journal:
    capacity: int = 100_000
    _entries: deque[Entry] = field(init=False)
    _seq: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._entries = deque(maxlen=self.capacity)

    def record(
        self,
        *,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: Any,
        status: int,
        at: float,
        request_id: str | None = None,
        batch_id: str | None = None,
        operation_id: str | None = None,
        account_pk: int | None = None,
    ) -> None:
        with self._lock:
            self._seq += 1
            self._entries.append(
                Entry(
                    self._seq,
                    method.upper(),
                    path,
                    query,
                    body,
                    status,
                    request_id,
                    at,
                    batch_id,
                    operation_id,
                    account_pk,
                )
            )

    def select(self, query: JournalQuery) -> list[Entry]:
        with self._lock:
            entries = list(self._entries)
        return [entry for entry in entries if query.admits(entry)]

    def clear(self, account_pk: int | None = None) -> None:
        with self._lock:
            if account_pk is None:
                self._entries.clear()
            else:
                kept = [e for e in self._entries if e.account_pk != account_pk]
                self._entries.clear()
                self._entries.extend(kept)
