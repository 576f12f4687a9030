"""A fresh emulator's database, copied from a migrated template instead of migrated.

Migrating an empty SQLite database means importing Alembic and running every migration:
about a quarter of the second `conveyor emulate` has to start in (docs/benchmarks.md). The
template is made once per set of migrations (keyed by their content), by those same
migrations, in the user's cache folder; each fresh emulator copies it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import conveyor.storage

log = logging.getLogger("conveyor.emulator")
VERSIONS_DIR = Path(conveyor.storage.__file__).parent / "migrations" / "versions"
DATABASE_NAME = "conveyor.db"  # as Settings.resolved_database_url names it


def template_key() -> str:
    digest = hashlib.sha256()
    for path in sorted(VERSIONS_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "conveyor"


def seed_database(data_dir: Path, cache: Path | None = None) -> bool:
    """Put an empty, migrated SQLite database in `data_dir` unless one is there; False when
    that cannot be done (a folder not writable), and the caller migrates as usual."""
    target = data_dir / DATABASE_NAME
    if target.exists():
        return False
    template = (cache or cache_dir()) / f"emulate-{template_key()}.db"
    try:
        if not template.exists():
            _build(template)
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, target)
    except OSError as exc:
        log.debug("no database template (%s); migrating instead", exc)
        return False
    return True


def _build(template: Path) -> None:
    from conveyor.storage.database import open_database
    from conveyor.storage.migrate import upgrade

    template.parent.mkdir(parents=True, exist_ok=True)
    scratch = template.with_name(f"{template.name}.{os.getpid()}.tmp")
    database = open_database(f"sqlite:///{scratch}")
    try:
        upgrade(database)
    finally:
        database.dispose()  # the last connection closed: the WAL is folded into the file
    os.replace(scratch, template)  # atomic: two emulators building at once both succeed
