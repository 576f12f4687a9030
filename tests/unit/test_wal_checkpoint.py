"""SQLite's write-ahead log is folded into the database file by a background thread
(storage.wal_checkpoint), not inside a writer's commit."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from sqlalchemy import text

from conveyor.storage.database import _sqlite_file, open_database
from conveyor.storage.wal_checkpoint import BACKSTOP_AUTOCHECKPOINT_PAGES, WalCheckpointer


def _rows_in_the_file_alone(database_file: Path, copy: Path) -> int:
    """Rows of `t` in the database file without its WAL: what a checkpoint has folded in."""
    shutil.copyfile(database_file, copy)
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the table itself is still only in the log
    finally:
        conn.close()


def test_commits_reach_the_database_file_without_a_writer_checkpointing(tmp_path: Path) -> None:
    database_file = tmp_path / "conveyor.db"
    database = open_database(f"sqlite:///{database_file}")
    try:
        assert database.checkpointer is not None
        with database.write() as conn:
            # A writer would only fold the log itself past the backstop's size.
            pages = conn.execute(text("PRAGMA wal_autocheckpoint")).scalar()
            assert pages == BACKSTOP_AUTOCHECKPOINT_PAGES
            conn.execute(text("CREATE TABLE t (n INTEGER)"))
        for start in range(0, 300, 100):
            with database.write() as conn:
                conn.execute(
                    text("INSERT INTO t (n) VALUES (:n)"),
                    [{"n": n} for n in range(start, start + 100)],
                )
        assert database.checkpointer.join(timeout=10)
        assert _rows_in_the_file_alone(database_file, tmp_path / "copy.db") == 300
    finally:
        database.dispose()


def test_dispose_stops_the_thread_and_folds_the_log(tmp_path: Path) -> None:
    database_file = tmp_path / "conveyor.db"
    database = open_database(f"sqlite:///{database_file}")
    checkpointer = database.checkpointer
    assert checkpointer is not None
    with database.write() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
        conn.execute(text("INSERT INTO t (n) VALUES (1)"))
    database.dispose()
    assert not checkpointer._thread.is_alive()
    assert _rows_in_the_file_alone(database_file, tmp_path / "copy.db") == 1


def test_only_a_database_file_gets_a_checkpointer() -> None:
    assert _sqlite_file("sqlite:////var/lib/conveyor.db") == "/var/lib/conveyor.db"
    assert _sqlite_file("sqlite:///relative.db") == "relative.db"
    assert _sqlite_file("sqlite://") is None
    assert _sqlite_file("sqlite:///:memory:") is None
    assert _sqlite_file("sqlite:///file:x?mode=memory&uri=true") is None


def test_join_without_commits_returns_at_once_and_close_is_prompt(tmp_path: Path) -> None:
    # No commit announced: nothing to wait for, and no connection was ever opened (the file
    # is not even created by the checkpointer).
    checkpointer = WalCheckpointer(str(tmp_path / "absent.db"), min_interval_seconds=60)
    assert checkpointer.join(timeout=0)
    checkpointer.close()
    assert not (tmp_path / "absent.db").exists()


def test_a_failing_checkpoint_is_logged_and_counted_as_done(tmp_path: Path) -> None:
    # A path in a missing directory: connecting fails; the thread must survive it.
    checkpointer = WalCheckpointer(str(tmp_path / "missing" / "x.db"))
    try:
        checkpointer.committed()
        assert checkpointer.join(timeout=10)
        checkpointer.committed()
        assert checkpointer.join(timeout=10)
        assert checkpointer._thread.is_alive()
    finally:
        checkpointer.close()
