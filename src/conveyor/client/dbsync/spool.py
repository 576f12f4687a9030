"""One chunk's rows and results on local disk, so a chunk of 100,000 rows costs no memory.

Results come back in any order and keyed by ``operation_id`` only; the write-back wants them
beside their source row, in row order. A private on-disk SQLite database does the matching.
"""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from conveyor.client.models import BatchResult

_INSERT_BATCH = 5000


class DuplicateKey(ValueError):
    """Two rows of one chunk have the same key value."""


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """A source row and what became of it."""

    ordinal: int
    operation_id: str
    values: tuple[Any, ...]
    email: str
    status_code: int | None
    web_id: Any
    member_id: str | None
    unique_email_id: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


class ChunkSpool:
    def __init__(self) -> None:
        # "" opens a private temporary database that SQLite keeps on disk once it grows.
        self._db = sqlite3.connect("")
        self._db.executescript(
            """
            CREATE TABLE rows (ordinal INTEGER PRIMARY KEY, operation_id TEXT UNIQUE NOT NULL,
                               email TEXT NOT NULL, local_error TEXT, tagged INTEGER NOT NULL,
                               payload BLOB NOT NULL);
            CREATE TABLE results (operation_id TEXT PRIMARY KEY, status_code INTEGER,
                                  web_id BLOB, member_id TEXT, unique_email_id TEXT, error TEXT);
            CREATE TABLE tag_results (operation_id TEXT PRIMARY KEY, status_code INTEGER,
                                      error TEXT);
            """
        )
        self._pending: list[tuple[int, str, str, str | None, int, bytes]] = []
        self.rows = 0

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ChunkSpool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def add_row(
        self,
        operation_id: str,
        values: Sequence[Any],
        email: str,
        *,
        local_error: str | None,
        tagged: bool,
    ) -> None:
        self.rows += 1
        # pickle keeps each value's type (a datetime stays a datetime for the write-back).
        payload = pickle.dumps(tuple(values), protocol=pickle.HIGHEST_PROTOCOL)
        self._pending.append((self.rows, operation_id, email, local_error, int(tagged), payload))
        if len(self._pending) >= _INSERT_BATCH:
            self.flush()

    def flush(self) -> None:
        try:
            self._db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?)", self._pending)
        except sqlite3.IntegrityError:
            raise DuplicateKey() from None
        self._pending.clear()
        self._db.commit()

    def record_results(self, results: Iterable[BatchResult]) -> None:
        insert = "INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?, ?)"
        pending: list[tuple[Any, ...]] = []
        for result in results:
            web_id = member_id = unique_email_id = None
            if result.ok and isinstance(result.body, dict):
                web_id = result.body.get("web_id")
                member_id = _text(result.body.get("id"))
                unique_email_id = _text(result.body.get("unique_email_id"))
            error = None if result.ok else result.error
            pending.append(
                (result.operation_id, result.status_code, web_id, member_id, unique_email_id, error)
            )
            if len(pending) >= _INSERT_BATCH:
                self._db.executemany(insert, pending)
                pending.clear()
        self._db.executemany(insert, pending)
        self._db.commit()

    def record_tag_results(self, results: Iterable[BatchResult]) -> None:
        insert = "INSERT OR IGNORE INTO tag_results VALUES (?, ?, ?)"
        pending: list[tuple[Any, ...]] = []
        for result in results:
            pending.append((result.operation_id, result.status_code, result.error or None))
            if len(pending) >= _INSERT_BATCH:
                self._db.executemany(insert, pending)
                pending.clear()
        self._db.executemany(insert, pending)
        self._db.commit()

    @property
    def sendable_rows(self) -> int:
        return int(
            self._db.execute("SELECT count(*) FROM rows WHERE local_error IS NULL").fetchone()[0]
        )

    def sendable(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """The rows that become an upsert, in row order."""
        query = "SELECT operation_id, payload FROM rows WHERE local_error IS NULL ORDER BY ordinal"
        for operation_id, payload in self._db.execute(query):
            yield operation_id, pickle.loads(payload)

    def count_to_tag(self) -> int:
        query = (
            "SELECT count(*) FROM rows r JOIN results x ON x.operation_id = r.operation_id"
            " WHERE r.tagged = 1 AND x.error IS NULL"
        )
        return int(self._db.execute(query).fetchone()[0])

    def to_tag(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """The rows with tags whose upsert succeeded: their tags go in a second batch."""
        query = (
            "SELECT r.operation_id, r.payload FROM rows r JOIN results x"
            " ON x.operation_id = r.operation_id"
            " WHERE r.tagged = 1 AND x.error IS NULL ORDER BY r.ordinal"
        )
        for operation_id, payload in self._db.execute(query):
            yield operation_id, pickle.loads(payload)

    def outcomes(self, *, skip: int = 0, missing: str) -> Iterator[RowOutcome]:
        """Every row in order (after the first ``skip``), with its result."""
        query = (
            "SELECT r.ordinal, r.operation_id, r.payload, r.email, r.local_error,"
            " x.status_code, x.web_id, x.member_id, x.unique_email_id, x.error,"
            " t.status_code, t.error"
            " FROM rows r LEFT JOIN results x ON x.operation_id = r.operation_id"
            " LEFT JOIN tag_results t ON t.operation_id = r.operation_id"
            " WHERE r.ordinal > ? ORDER BY r.ordinal"
        )
        for (
            ordinal, operation_id, payload, email, local_error,
            status, web_id, member_id, unique_email_id, error,
            tag_status, tag_error,
        ) in self._db.execute(query, (skip,)):  # fmt: skip
            if local_error is not None:
                status, web_id, member_id, unique_email_id, error = (
                    None,
                    None,
                    None,
                    None,
                    local_error,
                )
            elif status is None:
                error = missing
            elif error is None and tag_error is not None:
                # The member is in, its tags are not: the row failed, and says why.
                status, error = tag_status, f"tags: {tag_error}"
            yield RowOutcome(
                ordinal=ordinal,
                operation_id=operation_id,
                values=pickle.loads(payload),
                email=email,
                status_code=status,
                web_id=web_id,
                member_id=member_id,
                unique_email_id=unique_email_id,
                error=error,
            )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
