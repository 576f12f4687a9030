"""Alembic migrations, applied programmatically on start (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from conveyor.storage.database import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database.url.replace("%", "%%"))
    config.attributes["engine"] = database.writer
    return config


def upgrade(database: Database) -> None:
    """Bring the schema to the newest revision; safe to call from several processes."""
    command.upgrade(alembic_config(database), "head")
