"""Results back into the source database, and failures into an errors file.

The write-back statement runs once per row with named parameters: every source column by its
name, and ``web_id``, ``member_id``, ``unique_email_id``, ``status_code`` and ``error`` from the
answer (they win over source columns of the same name). Rows go in transactions of a few
thousand: one transaction per row would be slow, one per chunk would hold locks for long.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from conveyor.client.dbsync.errors import SyncError
from conveyor.client.dbsync.spool import RowOutcome

RESULT_PARAMETERS = ("web_id", "member_id", "unique_email_id", "status_code", "error")


def parameters(columns: Sequence[str], outcome: RowOutcome) -> dict[str, Any]:
    values = dict(zip(columns, outcome.values, strict=True))
    values.update(
        web_id=outcome.web_id,
        member_id=outcome.member_id,
        unique_email_id=outcome.unique_email_id,
        status_code=outcome.status_code,
        error=outcome.error,
    )
    return values


class ErrorsFile:
    """Failures as JSON lines, appended: key, email, status_code, error and the source row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[bytes] = path.open("ab")

    def write(self, columns: Sequence[str], outcome: RowOutcome) -> None:
        line = {
            "operation_id": outcome.operation_id,
            "email": outcome.email,
            "status_code": outcome.status_code,
            "error": outcome.error,
            "row": dict(zip(columns, outcome.values, strict=True)),
        }
        self._handle.write(orjson.dumps(line, default=str) + b"\n")

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ErrorsFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class WriteBack:
    """Runs the statement for groups of outcomes, each group one transaction."""

    def __init__(self, engine: Engine, statement: str | None, columns: Sequence[str]) -> None:
        self.engine = engine
        self.columns = tuple(columns)
        self.statement = sa.text(statement) if statement else None
        if self.statement is not None:
            known = {*self.columns, *RESULT_PARAMETERS}
            unknown = sorted(set(self.statement.compile().params) - known)
            if unknown:
                raise SyncError(
                    f"the write-back statement names parameters that are neither a column of "
                    f"the query nor a result field: {', '.join(':' + n for n in unknown)} "
                    f"(result fields: {', '.join(':' + n for n in RESULT_PARAMETERS)})"
                )

    def write(
        self,
        outcomes: Iterable[RowOutcome],
        record_progress: Callable[[Connection, int], None],
    ) -> None:
        """Write ``outcomes`` (one group); ``record_progress(conn, count)`` runs
        inside the same transaction, last, so progress recorded there commits with the rows."""
        group = list(outcomes)
        if not group:
            return
        try:
            with self.engine.begin() as conn:
                if self.statement is not None:
                    conn.execute(self.statement, [parameters(self.columns, o) for o in group])
                record_progress(conn, len(group))
        except sa.exc.DBAPIError as exc:
            detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise SyncError(f"the write-back statement failed: {detail}") from None
