"""Source databases of contacts for the sync tests: SQLite, PostgreSQL and MariaDB, each with
a table of its own, filled the same way."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conveyor.client import Client
from tests.conftest import require_service

MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
BASE_TIME = dt.datetime(2024, 1, 1, 9, 0, 0)


def email_for(row: int) -> str:
    if row % 500 == 0:
        return f"not-an-email-{row}"  # the server refuses these
    if row in (17, 9001):
        return ""  # nothing to send
    return f"Contact{row}@Example.org"


def tags_for(row: int) -> str | None:
    return "vip, newsletter" if row % 10 == 3 else None


@dataclass
class Source:
    """A table of contacts in one database, and the statements the tests use on it."""

    kind: str
    url: str
    engine: sa.Engine
    table: str
    rows: int = 0

    @property
    def query(self) -> str:
        return f"SELECT id, email, first_name, tags, updated_at FROM {self.table}"

    @property
    def write_back(self) -> str:
        return (
            f"UPDATE {self.table} SET web_id = :web_id, member_id = :member_id, "
            f"unique_email_id = :unique_email_id, sync_status = :status_code, "
            f"sync_error = :error WHERE id = :id"
        )

    def time(self, value: dt.datetime) -> Any:
        # SQLite has no timestamp type: ISO text orders the same way.
        return value.isoformat(sep=" ") if self.kind == "sqlite" else value

    def fill(self, rows: int) -> None:
        self.rows = rows
        text_type = "TEXT" if self.kind != "mariadb" else "VARCHAR(255)"
        stamp = {"sqlite": "TEXT", "postgres": "TIMESTAMP", "mariadb": "DATETIME"}[self.kind]
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"CREATE TABLE {self.table} (id INTEGER PRIMARY KEY, email {text_type},"
                    f" first_name {text_type}, tags {text_type}, updated_at {stamp},"
                    f" web_id BIGINT, member_id VARCHAR(64), unique_email_id VARCHAR(64),"
                    f" sync_status INTEGER, sync_error TEXT)"
                )
            )
            insert = sa.text(
                f"INSERT INTO {self.table} (id, email, first_name, tags, updated_at)"
                " VALUES (:id, :email, :first_name, :tags, :updated_at)"
            )
            batch: list[dict[str, Any]] = []
            for row in range(1, rows + 1):
                batch.append(
                    {
                        "id": row,
                        "email": email_for(row),
                        "first_name": f"First{row}",
                        "tags": tags_for(row),
                        # Three rows share each second: the key breaks the ties.
                        "updated_at": self.time(BASE_TIME + dt.timedelta(seconds=row // 3)),
                    }
                )
                if len(batch) == 5000:
                    conn.execute(insert, batch)
                    batch.clear()
            if batch:
                conn.execute(insert, batch)

    def touch(self, ids: list[int], first_name: str) -> None:
        later = self.time(BASE_TIME + dt.timedelta(days=2))
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"UPDATE {self.table} SET first_name = :name, updated_at = :at WHERE id = :id"
                ),
                [{"name": f"{first_name}{i}", "at": later, "id": i} for i in ids],
            )

    def outcome(self) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [
                tuple(row)
                for row in conn.execute(
                    sa.text(
                        f"SELECT id, email, web_id, member_id, unique_email_id, sync_status,"
                        f" sync_error FROM {self.table} ORDER BY id"
                    )
                )
            ]

    def drop(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {self.table}"))
            conn.execute(sa.text("DROP TABLE IF EXISTS conveyor_sync_state"))
        self.engine.dispose()


def open_source(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Source]:
    table = f"contacts_{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'crm.db'}"
        engine = sa.create_engine(url)
    elif kind == "postgres":
        base = str(request.getfixturevalue("postgres_url"))
        url = base
        engine = sa.create_engine("postgresql+psycopg://" + base.split("://", 1)[1])
    else:
        url = MARIADB_URL
        engine = sa.create_engine(url)
        try:
            with engine.connect():
                pass
        except sa.exc.OperationalError as exc:
            engine.dispose()
            require_service("MariaDB", str(exc.orig).strip())
    source = Source(kind, url, engine, table)
    try:
        yield source
    finally:
        source.drop()


def server_members(client: Client, list_id: str) -> dict[str, tuple[int, str, str]]:
    """email (lower case) → (web_id, member id, unique_email_id), for every member."""
    found: dict[str, tuple[int, str, str]] = {}
    offset = 0
    while True:
        page = client.request(
            "GET",
            f"lists/{list_id}/members",
            params={
                "count": 1000,
                "offset": offset,
                "fields": "members.email_address,members.web_id,members.id,"
                "members.unique_email_id,total_items",
            },
        )
        for member in page["members"]:
            found[member["email_address"].lower()] = (
                int(member["web_id"]),
                member["id"],
                member["unique_email_id"],
            )
        offset += len(page["members"])
        if not page["members"] or offset >= page["total_items"]:
            return found


def batch_ids(client: Client) -> set[str]:
    return {batch.id for batch in client.iter_batches()}


def new_batches_operations(client: Client, before: set[str]) -> tuple[int, int]:
    """How many batches were made since ``before``, and their operations in all."""
    made = [batch for batch in client.iter_batches() if batch.id not in before]
    return len(made), sum(batch.total_operations for batch in made)
