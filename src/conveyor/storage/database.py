"""Engines and transactions for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from conveyor.storage.wal_checkpoint import BACKSTOP_AUTOCHECKPOINT_PAGES, WalCheckpointer


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
    # SQLite on a file only: folds the WAL into the database file beside the writers.
    checkpointer: WalCheckpointer | None = None

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
        if self.checkpointer is not None:
            self.checkpointer.close()
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def open_database(url: str, *, pool_size: int = 16) -> Database:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = _sqlite_file(url)
        checkpointer = WalCheckpointer(path) if path else None
        writer = _sqlite_engine(
            url, begin="BEGIN IMMEDIATE", pool_size=pool_size, checkpointer=checkpointer
        )
        reader = _sqlite_engine(url, begin="BEGIN", pool_size=pool_size)
        return Database(url=url, writer=writer, reader=reader, checkpointer=checkpointer)
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    return Database(url=url, writer=engine, reader=engine)


def open_read_only(url: str) -> Database:
    """A SQLite database this process only reads (query_only): for a helper process that
    answers from snapshots while the server's process writes."""
    url = normalize_url(url)
    reader = _sqlite_engine(url, begin="BEGIN", pool_size=1, query_only=True)
    return Database(url=url, writer=reader, reader=reader)


def _sqlite_file(url: str) -> str | None:
    """The database file a SQLite URL names, or None for an in-memory database."""
    parsed = make_url(url)
    database = parsed.database
    if not database or database == ":memory:" or parsed.query.get("mode") == "memory":
        return None
    return database


# How long a SQLite writer waits for the write lock before it fails.
BUSY_TIMEOUT_SECONDS = 30.0


class WriterQueue:
    """First come, first served for this process's SQLite write transactions.

    SQLite has no queue for its write lock: a writer that finds it taken sleeps in its busy
    handler (1, 2, 5, ... then 100 ms at a time) and takes the lock only if it happens to be
    free when it wakes. The engine's worker threads commit a group and begin the next one
    at once, so an API request's write (a small batch's submit) could sleep through many
    groups: 1.2 to 5.8 s for a 10-operation submit beside a 200,000-operation batch on a busy
    machine (bench.fairness, 2026-11-29). Here writers wait in line and the lock is handed
    to the longest waiter on release, so a write waits for the transactions queued before
    it and no more; the busy handler remains for other processes.

    A writer that waited `timeout` seconds goes on without its turn (as before: SQLite's
    busy timeout then decides), so a thread that opens a second write transaction while
    holding one is slowed down, not deadlocked.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if waiter.acquire(timeout=timeout):
            return True  # handed over by `release`
        with self._mutex:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass  # handed over just now: the turn is ours after all
            else:
                return False
        return True

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()  # the turn passes on; still held
            else:
                self._held = False


class _QueuedConnection(sqlite3.Connection):
    """A sqlite3 connection that gives its writer turn back when its transaction ends."""

    writer_queue: WriterQueue | None = None
    checkpointer: WalCheckpointer | None = None
    holds_turn = False

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._end_turn()
        if self.checkpointer is not None:
            self.checkpointer.committed()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._end_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._end_turn()

    def _end_turn(self) -> None:
        if self.holds_turn and self.writer_queue is not None:
            self.holds_turn = False
            self.writer_queue.release()


def _sqlite_engine(
    url: str,
    *,
    begin: str,
    pool_size: int,
    checkpointer: WalCheckpointer | None = None,
    query_only: bool = False,
) -> Engine:
    queue = WriterQueue() if begin == "BEGIN IMMEDIATE" else None
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={
            "check_same_thread": False,
            "timeout": BUSY_TIMEOUT_SECONDS,
            "factory": _QueuedConnection,
        },
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control away from the driver so BEGIN is ours to choose.
        dbapi_connection.isolation_level = None
        if isinstance(dbapi_connection, _QueuedConnection):
            dbapi_connection.writer_queue = queue
            dbapi_connection.checkpointer = checkpointer
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # A run writes its members under a savepoint; past 64 KiB SQLite spills the
        # savepoint's copies of the pages it changes to a temporary file, a write per page
        # on the engine's path. In memory they cost a few MiB for the length of one group.
        cursor.execute("PRAGMA temp_store=MEMORY")
        if checkpointer is not None:
            cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_AUTOCHECKPOINT_PAGES}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
        if query_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        dbapi_connection = conn.connection.dbapi_connection
        if queue is None or not isinstance(dbapi_connection, _QueuedConnection):
            conn.exec_driver_sql(begin)
            return
        if not dbapi_connection.holds_turn:
            dbapi_connection.holds_turn = queue.acquire(BUSY_TIMEOUT_SECONDS)
        try:
            conn.exec_driver_sql(begin)
        except BaseException:
            dbapi_connection._end_turn()
            raise

    return engine
