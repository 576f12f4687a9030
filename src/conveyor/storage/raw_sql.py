"""Hot-path statements run straight on the DBAPI cursor.

SQLAlchemy Core costs ~20 µs of Python per `execute` on this class of machine, several times
what SQLite itself needs for a primary-key lookup; a statement built per call costs ~150-250
µs more for its cache key (reading a batch's row: 158 µs through Core, 12 on the cursor).
The statements a batch operation issues for every member, and those of a batch's life cycle
(its row, its status moves, its chunks' claims), are written with Core, compiled once per
dialect, and then executed on the connection's own cursor; everything else keeps using Core.
JSON columns are encoded here with orjson (SQLite stores text; PostgreSQL's json accepts it
and decodes on read).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Engine, Float, Table, bindparam, literal_column
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    # The parameter names in placeholder order (positional dialects: SQLite), else None.
    positions: tuple[str, ...] | None
    # The values of literals written in the statement (`status == "started"`, `limit(1)`),
    # which SQLAlchemy binds as parameters too; a caller's parameters go over them.
    literals: Mapping[str, Any]


@dataclass
class RawStatement:
    statement: ClauseElement
    _compiled: dict[str, _Compiled] = field(default_factory=dict)

    def _sql(self, dialect: Dialect) -> tuple[str, tuple[str, ...] | None]:
        compiled = self._compile(dialect)
        return compiled.sql, compiled.positions

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            result = cast(SQLCompiler, self.statement.compile(dialect=dialect))
            positions = getattr(result, "positiontup", None) if dialect.positional else None
            # Only parameters that came with a value: a `bindparam("x")` the caller forgets
            # must fail, not run as NULL. (An `in_` list is one expanding parameter, which
            # only Core renders: raw statements take `literal_list`.)
            literals = {
                name: bind.effective_value
                for bind, name in result.bind_names.items()
                if not bind.required
            }
            compiled = _Compiled(
                result.string, tuple(positions) if positions is not None else None, literals
            )
            self._compiled[dialect.name] = compiled
        return compiled

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Run with `params` on the caller's transaction; returns the DBAPI cursor."""
        compiled = self._compile(conn.dialect)
        if compiled.literals:
            params = {**compiled.literals, **params}
        cursor = conn.connection.cursor()
        if compiled.positions is None:
            cursor.execute(compiled.sql, params)
        else:
            cursor.execute(compiled.sql, _in_order(compiled.positions)(params))
        return cursor

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[Any] | None:
        cursor = self.execute(conn, params)
        try:
            row: Sequence[Any] | None = cursor.fetchone()
            return row
        finally:
            cursor.close()

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = self.first(conn, params)
        return None if row is None else row[0]

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        cursor = self.execute(conn, params)
        try:
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def first_pooled(self, engine: Engine, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """One row read on a pooled DBAPI connection, outside any SQLAlchemy transaction:
        for the hottest reads, whose connect and BEGIN would cost more than the query."""
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                compiled = self._compile(engine.dialect)
                if compiled.literals:
                    params = {**compiled.literals, **params}
                if compiled.positions is None:
                    cursor.execute(compiled.sql, params)
                else:
                    cursor.execute(compiled.sql, _in_order(compiled.positions)(params))
                row: Sequence[Any] | None = cursor.fetchone()
            finally:
                cursor.close()
            if engine.dialect.name != "sqlite":
                raw.rollback()  # psycopg opened a transaction for the SELECT: end it
        finally:
            raw.close()
        return row

    def run_many_tuples(
        self, conn: Connection, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """One statement, many rows (the DBAPI's executemany), each row a tuple in `columns`
        order: no dict per row to build and take apart again, which was a third of storing a
        batch's operations."""
        if not rows:
            return
        sql, positions = self._sql(conn.dialect)
        params: Sequence[Any] = rows
        if positions is None:
            params = [dict(zip(columns, row, strict=True)) for row in rows]
        elif positions != columns:
            order = [columns.index(name) for name in positions]
            params = [tuple(row[i] for i in order) for row in rows]
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(sql, params)
        finally:
            cursor.close()

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        cursor = self.execute(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()


@dataclass
class BulkInsert:
    """Many rows into one table, each a tuple in `columns` order: one COPY on PostgreSQL,
    on SQLite one `executemany` of the INSERT (with `json_rows`, statements that read the
    rows from JSON arrays).

    psycopg pipelines an `executemany`, but PostgreSQL still runs 500 INSERT statements for
    500 rows, and the worker waited for them: a group's member and result rows were two
    thirds of its time waiting on the server (bench.scale --profile). COPY loads them as one
    stream. A failure (a unique index) raises at the end of the COPY, in the caller's
    transaction, as the `executemany` did.

    With `json_rows`, SQLite gets the rows as JSON texts of 1,000 rows, each read back by
    `json_each` in one step that runs without the interpreter's lock. `executemany` takes
    the lock back for every row, to bind it, and a thread that gave the lock up waits a
    whole switch interval (5 ms) to get it back from a busy one: beside a thread parsing a
    batch body it stored 375 rows/s instead of 90,000, so storing and parsing took turns
    instead of overlapping (docs/benchmarks.md, "Ingest: rows stored without the GIL").
    Alone, the JSON costs SQLite ~10% more per row than binding, more for wide rows: it is
    for a writer that runs beside a busy thread. JSON carries text, integers and NULL
    exactly, as binding them would; a table with a float column, a row JSON cannot carry
    (bytes, a lone surrogate, a huge integer) and text holding NUL (which SQLite's JSON
    functions cut short) keep the `executemany`.
    """

    table: Table
    columns: tuple[str, ...]
    json_rows: bool = False
    _insert: RawStatement = field(init=False, repr=False)
    _copy_sql: str = field(init=False, repr=False)
    _json_insert_sql: str | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._insert = RawStatement(
            self.table.insert().values({name: bindparam(name) for name in self.columns})
        )
        self._json_insert_sql = (
            _json_insert_sql(self.table, self.columns) if self.json_rows else None
        )
        # The COPY text once, quoted as PostgreSQL quotes; the dialect's constructor is untyped.
        quote = PGDialect().identifier_preparer.quote  # type: ignore[no-untyped-call]
        names = ", ".join(quote(name) for name in self.columns)
        self._copy_sql = f"COPY {quote(self.table.name)} ({names}) FROM STDIN"

    def run(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if conn.dialect.name != "postgresql":
            if self._json_insert_sql is None:
                self._insert.run_many_tuples(conn, self.columns, rows)
                return
            # A slice at a time: the JSON text (and its decoded copy) stays ~0.25 MB instead
            # of growing with the caller's page.
            for start in range(0, len(rows), _JSON_SLICE_ROWS):
                part = rows[start : start + _JSON_SLICE_ROWS]
                text = _json_rows(part)
                if text is None:
                    self._insert.run_many_tuples(conn, self.columns, part)
                    continue
                cursor = conn.connection.cursor()
                try:
                    cursor.execute(self._json_insert_sql, (text,))
                finally:
                    cursor.close()
            return
        cursor = conn.connection.cursor()
        try:
            with cursor.copy(self._copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        finally:
            cursor.close()


# Rows per JSON text: one statement per 1,000 costs nothing next to their rows.
_JSON_SLICE_ROWS = 1_000


def _json_insert_sql(table: Table, columns: tuple[str, ...]) -> str | None:
    """The SQLite INSERT that reads its rows from one JSON array parameter, or None for a
    table that stores floats (SQLite's JSON number parser is not guaranteed to give back the
    double that was written)."""
    if sqlite3.sqlite_version_info < (3, 38) or any(
        isinstance(table.c[name].type, Float) for name in columns
    ):
        return None
    quote = SQLiteDialect().identifier_preparer.quote
    names = ", ".join(quote(name) for name in columns)
    values = ", ".join(f"value ->> {index}" for index in range(len(columns)))
    return f"INSERT INTO {quote(table.name)} ({names}) SELECT {values} FROM json_each(?)"


def _json_rows(rows: Sequence[tuple[Any, ...]]) -> str | None:
    """The rows as one JSON array of arrays, or None when JSON cannot carry them exactly."""
    try:
        encoded = orjson.dumps(rows)
    except orjson.JSONEncodeError:
        return None
    # NUL in a string: SQLite's `->>` would end the text there. (An escaped backslash before
    # "u0000" matches too, and takes the slower path for nothing.)
    if b"\\u0000" in encoded:
        return None
    return encoded.decode()  # bound as text: bytes would be a BLOB, which is not JSON


def literal_list(values: Iterable[str]) -> list[ColumnElement[Any]]:
    """`values` written into the SQL, for an `in_` of a raw statement: a list of plain values
    is bound as one expanding parameter, which only Core's `execute` renders."""
    return [literal_column("'" + value.replace("'", "''") + "'") for value in values]


def _in_order(positions: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """Takes a parameter mapping to the tuple of a positional statement: `itemgetter` does it
    in C, a tenth of the cost of a generator per row."""
    if len(positions) < 2:  # itemgetter answers a bare value for one name, fails for none
        return lambda params: tuple([params[name] for name in positions])
    return itemgetter(*positions)


def dump_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def load_json(value: Any) -> Any:
    """SQLite hands JSON columns back as text, psycopg as Python objects."""
    if isinstance(value, str | bytes):
        return orjson.loads(value)
    return value


@dataclass
class RawSavepoint:
    """A savepoint in plain SQL: SQLAlchemy's nested transaction object costs ~90 µs here."""

    conn: Connection
    name: str = "op"

    def __enter__(self) -> RawSavepoint:
        self._exec(f"SAVEPOINT {self.name}")
        return self

    def release(self) -> None:
        self._exec(f"RELEASE SAVEPOINT {self.name}")

    def rollback(self) -> None:
        self._exec(f"ROLLBACK TO SAVEPOINT {self.name}")
        self._exec(f"RELEASE SAVEPOINT {self.name}")

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.rollback()

    def _exec(self, sql: str) -> None:
        cursor = self.conn.connection.cursor()
        try:
            cursor.execute(sql)
        finally:
            cursor.close()
