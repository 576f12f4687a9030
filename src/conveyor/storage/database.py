"""Engines and transactions for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError


class DatabaseUnavailable(Exception):
    """The database cannot be reached (wrong address, down, refused credentials)."""


def normalize_url(url: str) -> str:
    """Route PostgreSQL URLs to psycopg 3, whatever scheme spelling the user gave."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


@dataclass
class Database:
    """Two views of one database: `write()` for read-write transactions, `read()` for reads.

    On SQLite writers take the write lock at BEGIN (`BEGIN IMMEDIATE`), so two writers queue
    on the busy timeout instead of failing with a lock upgrade deadlock; readers use plain
    deferred transactions and never wait under WAL.
    """

    url: str
    writer: Engine
    reader: Engine

    @property
    def is_sqlite(self) -> bool:
        return self.writer.dialect.name == "sqlite"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.reader.begin() as conn:
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read transaction whose statements all see one snapshot."""
        with self.reader.connect() as conn:
            if not self.is_sqlite:
                # SQLite's read transaction is one snapshot already; PostgreSQL's default
                # (read committed) takes a new one for every statement.
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def check(self) -> None:
        """Raise `DatabaseUnavailable`, with the driver's reason in one line, unless a
        trivial query answers."""
        try:
            with self.reader.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            shown = make_url(self.url).render_as_string(hide_password=True)
            raise DatabaseUnavailable(f"cannot reach the database at {shown}: {reason}") from None

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def open_database(url: str, *, pool_size: int = 16) -> Database:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        writer = _sqlite_engine(url, begin="BEGIN IMMEDIATE", pool_size=pool_size)
        reader = _sqlite_engine(url, begin="BEGIN", pool_size=pool_size)
        return Database(url=url, writer=writer, reader=reader)
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    return Database(url=url, writer=engine, reader=engine)


def _sqlite_engine(url: str, *, begin: str, pool_size: int) -> Engine:
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"check_same_thread": False, "timeout": 30},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control away from the driver so BEGIN is ours to choose.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)

    return engine
