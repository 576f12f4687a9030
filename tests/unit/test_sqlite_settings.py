"""The SQLite connections' settings (storage.database): what each one spares the engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from conveyor.storage.database import open_database


def _open_temporary_files() -> list[str]:
    """SQLite's temporary files (etilqs_*) this process holds open; SQLite unlinks them as it
    opens them, so only /proc shows them."""
    fds = Path("/proc/self/fd")
    names = []
    for fd in fds.iterdir():
        try:
            names.append(str(fd.readlink()))
        except OSError:
            continue
    return [name for name in names if "etilqs_" in name]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("temp_store", [None, "FILE"])
def test_a_savepoint_journal_stays_in_memory(tmp_path: Path, temp_store: str | None) -> None:
    # A run writes its members under a savepoint; the pages it changes are copied to the
    # savepoint's journal, which past 64 KiB went to a temporary file, a write per page.
    database = open_database(f"sqlite:///{tmp_path / 'conveyor.db'}")
    try:
        with database.write() as conn:
            conn.execute(text("CREATE TABLE t (n INTEGER, padding TEXT)"))
            conn.execute(
                text("INSERT INTO t VALUES (:n, :padding)"),
                [{"n": n, "padding": "x" * 200} for n in range(2000)],  # ~100 pages
            )
        # On the writer's own sqlite3 connection: SQLite picks memory or file for the
        # savepoint journal when the transaction begins, so the control sets it before.
        raw = database.writer.raw_connection()
        try:
            sqlite_conn = raw.driver_connection
            assert sqlite_conn is not None
            if temp_store is not None:  # the control: SQLite's default, a file
                sqlite_conn.execute(f"PRAGMA temp_store={temp_store}")
            sqlite_conn.execute("BEGIN IMMEDIATE")
            sqlite_conn.execute("SAVEPOINT run")
            sqlite_conn.execute("UPDATE t SET padding = 'y' || padding")
            spilled = _open_temporary_files()
            sqlite_conn.execute("RELEASE SAVEPOINT run")
            sqlite_conn.execute("COMMIT")
        finally:
            raw.close()
        assert bool(spilled) == (temp_store == "FILE"), spilled
    finally:
        database.dispose()
