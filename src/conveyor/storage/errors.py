"""Database driver errors, translated: nothing above storage knows psycopg or sqlite3."""

from __future__ import annotations

import sqlite3


class UniqueViolation(Exception):
    """A unique index refused a row (another transaction wrote the same key first)."""


def is_unique_violation(exc: BaseException) -> bool:
    """psycopg's SQLSTATE 23505 or sqlite3's message, raw or wrapped by SQLAlchemy."""
    error = getattr(exc, "orig", None) or exc
    if getattr(error, "sqlstate", None) == "23505":
        return True
    return isinstance(error, sqlite3.IntegrityError) and "UNIQUE constraint" in str(error)


def is_foreign_key_violation(exc: BaseException) -> bool:
    """psycopg's SQLSTATE 23503 or sqlite3's message: the row a new row points to is gone
    (a list deleted by another transaction while a member was being added to it)."""
    error = getattr(exc, "orig", None) or exc
    if getattr(error, "sqlstate", None) == "23503":
        return True
    return isinstance(error, sqlite3.IntegrityError) and "FOREIGN KEY constraint" in str(error)
