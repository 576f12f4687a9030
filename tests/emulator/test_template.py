"""A fresh emulator's database is a copy of a template the real migrations made."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conveyor.emulator.template import seed_database, template_key
from conveyor.storage.database import open_database
from conveyor.storage.migrate import upgrade


def _schema(path: Path) -> tuple[list[tuple[str, str, str]], list[str]]:
    with sqlite3.connect(path) as conn:
        objects = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).fetchall()
        version = [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
    return objects, version


def test_a_seeded_database_is_the_migrated_schema(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert seed_database(tmp_path / "one", cache) is True
    template = cache / f"emulate-{template_key()}.db"
    built = template.stat().st_mtime_ns
    assert seed_database(tmp_path / "two", cache) is True
    assert template.stat().st_mtime_ns == built  # made once, then copied

    migrated = tmp_path / "migrated.db"
    database = open_database(f"sqlite:///{migrated}")
    try:
        upgrade(database)
    finally:
        database.dispose()
    assert _schema(tmp_path / "two" / "conveyor.db") == _schema(migrated)
    assert list(cache.iterdir()) == [template]  # no scratch file left


def test_an_existing_database_or_an_unwritable_cache_is_left_to_the_migrations(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    assert seed_database(tmp_path / "one", cache)
    assert seed_database(tmp_path / "one", cache) is False
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert seed_database(tmp_path / "three", blocked) is False
    assert not (tmp_path / "three" / "conveyor.db").exists()
