"""Reading the source database: the user's query, ordered and cut into chunks by a watermark.

Rows are ordered by the since-column (if any) and then by the key column, and a chunk is the
rows after one watermark and up to the next. The same bounds select the same rows again, so an
interrupted chunk can be rebuilt byte for byte. Results are streamed (a server-side cursor on
PostgreSQL and MySQL/MariaDB; SQLite reads lazily by itself), never held whole in memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from conveyor.client.dbsync.errors import SyncError

# Rows fetched per round trip from a server-side cursor.
FETCH_SIZE = 2000
SOURCE_ALIAS = "conveyor_source"

Watermark = tuple[Any, ...]


def open_source(url: str) -> Engine:
    """An engine for any URL SQLAlchemy knows (postgresql://, mysql+pymysql://, sqlite:///)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        # The driver this project already installs, rather than psycopg2's default.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    elif url.startswith("mysql://") or url.startswith("mariadb://"):
        url = "mysql+pymysql://" + url.split("://", 1)[1]
    try:
        return sa.create_engine(url, pool_pre_ping=True)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise SyncError(f"cannot open the source database {safe_url(url)}: {exc}") from None
    except ModuleNotFoundError as exc:
        raise SyncError(
            f"the driver for {safe_url(url)} is not installed ({exc.name}); for MySQL and "
            "MariaDB install conveyor[sync]"
        ) from None


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable URL>"


def encode_value(value: Any) -> Any:
    """A watermark value as JSON that :func:`decode_value` turns back into the same type."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    raise SyncError(
        f"a key or since-column value of type {type(value).__name__} cannot be kept as a "
        "watermark; use a number, text, date or timestamp column"
    )


def decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "datetime" in value:
            return dt.datetime.fromisoformat(value["datetime"])
        if "date" in value:
            return dt.date.fromisoformat(value["date"])
        if "decimal" in value:
            return Decimal(value["decimal"])
    return value


def encode_watermark(mark: Watermark | None) -> list[Any] | None:
    return None if mark is None else [encode_value(value) for value in mark]


def decode_watermark(data: Sequence[Any] | None) -> Watermark | None:
    return None if data is None else tuple(decode_value(value) for value in data)


@dataclass(frozen=True, slots=True)
class SourceQuery:
    """The user's query and the columns that order it."""

    engine: Engine
    query: str
    key_column: str
    since_column: str | None = None

    @property
    def order_columns(self) -> tuple[str, ...]:
        if self.since_column:
            return (self.since_column, self.key_column)
        return (self.key_column,)

    def _q(self, name: str) -> str:
        preparer = self.engine.dialect.identifier_preparer
        return f"{SOURCE_ALIAS}.{preparer.quote(name)}"

    def _inner(self) -> str:
        # A trailing ";" is natural at a prompt but breaks the query once wrapped.
        return self.query.strip().rstrip(";").strip()

    def _after(self, mark: Watermark, prefix: str, params: dict[str, Any]) -> str:
        """``(a, b) > (:a, :b)`` spelled out: every dialect reads it, and it can use an index."""
        return self._compare(mark, prefix, params, strict=True, greater=True)

    def _up_to(self, mark: Watermark, prefix: str, params: dict[str, Any]) -> str:
        return self._compare(mark, prefix, params, strict=False, greater=False)

    def _compare(
        self, mark: Watermark, prefix: str, params: dict[str, Any], *, strict: bool, greater: bool
    ) -> str:
        columns = [self._q(name) for name in self.order_columns]
        names = [f"{prefix}{i}" for i in range(len(columns))]
        for name, value in zip(names, mark, strict=True):
            params[name] = value
        op = ">" if greater else "<"
        last_op = op if strict else f"{op}="
        terms = []
        for depth in range(len(columns)):
            equal = [f"{columns[i]} = :{names[i]}" for i in range(depth)]
            this_op = last_op if depth == len(columns) - 1 else op
            terms.append(" AND ".join([*equal, f"{columns[depth]} {this_op} :{names[depth]}"]))
        return "(" + " OR ".join(f"({term})" for term in terms) + ")"

    def select(
        self,
        after: Watermark | None,
        up_to: Watermark | None = None,
        *,
        count: bool = False,
        limit: int | None = None,
    ) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {}
        where = []
        if self.since_column:
            # A row without a since value cannot be placed in the order: it is never read.
            where.append(f"{self._q(self.since_column)} IS NOT NULL")
        if after is not None:
            where.append(self._after(after, "after_", params))
        if up_to is not None:
            where.append(self._up_to(up_to, "upto_", params))
        sql = f"SELECT {'COUNT(*)' if count else '*'} FROM ({self._inner()}) {SOURCE_ALIAS}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if not count:
            sql += " ORDER BY " + ", ".join(self._q(name) for name in self.order_columns)
        if limit is not None:
            # A bound, not a cursor closed early: MySQL drivers read a streamed result to its
            # end before the connection can be used again.
            sql += " LIMIT :row_limit"
            params["row_limit"] = limit
        return sql, params

    def columns(self) -> tuple[str, ...]:
        """The query's column names, from a query that reads no row."""
        sql = f"SELECT * FROM ({self._inner()}) {SOURCE_ALIAS} WHERE 1 = 0"
        try:
            with self.engine.connect() as conn:
                names = tuple(conn.execute(sa.text(sql)).keys())
        except sa.exc.DBAPIError as exc:
            raise SyncError(f"the query failed: {_first_line(exc)}") from None
        for needed in self.order_columns:
            if needed not in names:
                raise SyncError(
                    f"the query returns no {needed!r} column; its columns are: "
                    f"{', '.join(names)}. "
                    + (
                        "The key column (--key-column, default id) identifies each row and "
                        "orders the rows, so that an interrupted sync can resume."
                        if needed == self.key_column
                        else "Select the since-column too."
                    )
                )
        return names

    def count(self, after: Watermark | None) -> int:
        sql, params = self.select(after, count=True)
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(sql), params).scalar_one())

    def rows(
        self,
        conn: Connection,
        after: Watermark | None,
        up_to: Watermark | None = None,
        *,
        limit: int | None = None,
    ) -> Iterator[Sequence[Any]]:
        """The rows after ``after`` (and up to ``up_to``, at most ``limit``), in order, streamed."""
        sql, params = self.select(after, up_to, limit=limit)
        streamed = conn.execution_options(stream_results=True, yield_per=FETCH_SIZE)
        try:
            result = streamed.execute(sa.text(sql), params)
        except sa.exc.DBAPIError as exc:
            raise SyncError(f"the query failed: {_first_line(exc)}") from None
        with result:
            yield from result

    def order_positions(self, columns: Sequence[str]) -> tuple[int, ...]:
        return tuple(columns.index(name) for name in self.order_columns)


def _first_line(exc: sa.exc.DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
