"""SQLite writers of one process take turns first come, first served (storage.database).

A small batch's submit beside a big batch on SQLite depends on it: without a queue the
request's write slept in SQLite's busy handler while the engine's workers took the lock
group after group (docs/benchmarks.md, "Engine: order and fairness").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from conveyor.storage.database import WriterQueue, open_database

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _until(condition: Callable[[], bool]) -> None:
    """Wait for another thread to reach a point (no fixed sleep: the scheduler decides)."""
    done = threading.Event()
    for _ in range(1_000_000):
        if condition():
            return
        done.wait(0.0001)
    raise AssertionError("the other thread never got there")


def test_the_turn_goes_to_the_longest_waiter_not_to_a_writer_coming_back() -> None:
    queue = WriterQueue()
    assert queue.acquire(timeout=1)
    order: list[str] = []

    def writer(name: str) -> None:
        assert queue.acquire(timeout=30)
        order.append(name)
        queue.release()

    first = threading.Thread(target=writer, args=("first",))
    first.start()
    _until(lambda: len(queue._waiters) == 1)
    second = threading.Thread(target=writer, args=("second",))
    second.start()
    _until(lambda: len(queue._waiters) == 2)
    queue.release()
    # The releasing writer begins again at once: it is behind both waiters now.
    assert queue.acquire(timeout=30)
    assert order == ["first", "second"]
    queue.release()
    first.join()
    second.join()


def test_a_writer_that_waited_too_long_goes_on_without_its_turn() -> None:
    queue = WriterQueue()
    assert queue.acquire(timeout=1)
    assert not queue.acquire(timeout=0)  # SQLite's busy timeout decides from here
    assert not queue._waiters
    queue.release()
    assert queue.acquire(timeout=0)
    queue.release()


@sqlite_only
def test_commits_and_rollbacks_give_the_turn_back(database_url: str | None, tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'queue.db'}")
    try:
        with database.write() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        with pytest.raises(RuntimeError), database.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            raise RuntimeError("rolled back")
        with database.writer.connect() as conn:
            transaction = conn.begin()
            conn.execute(text("INSERT INTO t VALUES (2)"))
            transaction.commit()
        # Nobody holds a turn now: it is free at once.
        raw = database.writer.raw_connection()
        try:
            queue = raw.dbapi_connection.writer_queue  # type: ignore[union-attr]
        finally:
            raw.close()
        assert isinstance(queue, WriterQueue)
        assert queue.acquire(timeout=0)
        queue.release()
        with database.read() as conn:
            assert conn.execute(text("SELECT x FROM t ORDER BY x")).scalars().all() == [2]
    finally:
        database.dispose()
