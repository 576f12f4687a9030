"""Statements compiled once and run on the DBAPI cursor (storage/raw_sql.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    func,
    literal_column,
    select,
    update,
)

from conveyor.storage.raw_sql import RawStatement, literal_list

metadata = MetaData()
chunks = Table(
    "chunks",
    metadata,
    Column("seq", Integer, primary_key=True),
    Column("state", String, nullable=False),
    Column("attempts", Integer, nullable=False),
)


@pytest.fixture
def conn() -> Iterator[Connection]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            chunks.insert(),
            [
                {"seq": 1, "state": "done", "attempts": 1},
                {"seq": 2, "state": "queued", "attempts": 0},
                {"seq": 3, "state": "queued", "attempts": 0},
            ],
        )
        yield connection
    engine.dispose()


def test_literals_written_in_the_statement_are_bound_for_the_caller(conn: Connection) -> None:
    # `== "queued"`, `limit(1)` and `+ 1` are parameters to SQLAlchemy: the caller gives only
    # its own.
    first_queued = RawStatement(
        select(chunks.c.seq)
        .where(chunks.c.state == "queued", chunks.c.seq > bindparam("after"))
        .order_by(chunks.c.seq)
        .limit(1)
    )
    assert first_queued.all(conn, {"after": 0}) == [(2,)]
    assert first_queued.first(conn, {"after": 2}) == (3,)

    take = RawStatement(
        update(chunks)
        .where(chunks.c.seq == bindparam("seq"), chunks.c.state == "queued")
        .values(state="running", attempts=chunks.c.attempts + 1)
    )
    assert take.run(conn, {"seq": 2}) == 1
    assert take.run(conn, {"seq": 2}) == 0  # not queued any more
    rows = conn.execute(select(chunks.c.seq, chunks.c.state, chunks.c.attempts)).all()
    assert [tuple(row) for row in rows] == [(1, "done", 1), (2, "running", 1), (3, "queued", 0)]


def test_literal_columns_still_work(conn: Connection) -> None:
    unfinished = RawStatement(
        select(chunks.c.seq).where(chunks.c.state.in_([literal_column("'queued'")]))
    )
    assert unfinished.all(conn, {}) == [(2,), (3,)]


def test_a_literal_list_stands_in_for_an_in_list(conn: Connection) -> None:
    in_states = RawStatement(
        select(func.count()).where(chunks.c.state.in_(literal_list(["done", "it's"])))
    )
    assert in_states.scalar(conn, {}) == 1
    nothing = RawStatement(select(chunks.c.seq).where(chunks.c.seq == bindparam("seq")))
    assert nothing.scalar(conn, {"seq": 9}) is None


def test_a_parameter_the_caller_forgets_fails_instead_of_binding_null(conn: Connection) -> None:
    by_state = RawStatement(select(chunks.c.seq).where(chunks.c.state == bindparam("state")))
    with pytest.raises(KeyError):
        by_state.all(conn, {})
