"""SQLite page size: 16 KiB for a new database; an existing one keeps its own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import text

from conveyor.storage.database import SQLITE_PAGE_BYTES, open_database


def _page_size(database_file: Path) -> int:
    conn = sqlite3.connect(database_file)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def test_a_new_database_gets_16_kib_pages(tmp_path: Path) -> None:
    database_file = tmp_path / "new.db"
    database = open_database(f"sqlite:///{database_file}")
    try:
        with database.write() as conn:
            conn.execute(text("CREATE TABLE t (n INTEGER)"))
    finally:
        database.dispose()
    assert SQLITE_PAGE_BYTES == 16_384
    assert _page_size(database_file) == SQLITE_PAGE_BYTES


def test_an_existing_database_keeps_its_page_size_and_its_rows(tmp_path: Path) -> None:
    database_file = tmp_path / "old.db"
    conn = sqlite3.connect(database_file)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (n INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(1000)])
    conn.commit()
    conn.close()
    database = open_database(f"sqlite:///{database_file}")
    try:
        with database.write() as db:
            db.execute(text("INSERT INTO t VALUES (1000)"))
        with database.read() as db:
            assert db.execute(text("SELECT count(*) FROM t")).scalar() == 1001
    finally:
        database.dispose()
    assert _page_size(database_file) == 4096
