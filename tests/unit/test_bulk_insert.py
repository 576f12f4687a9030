"""Rows stored by `BulkInsert` (storage/raw_sql.py) on SQLite: as one JSON text read back by
`json_each`, they must land exactly as the DBAPI's `executemany` binds them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Connection, Float, Integer, MetaData, Table, Text, create_engine

from conveyor.storage import raw_sql
from conveyor.storage.raw_sql import BulkInsert

metadata = MetaData()
rows_table = Table(
    "rows",
    metadata,
    Column("seq", Integer, primary_key=True),
    Column("label", Text, nullable=True),
    Column("number", Integer, nullable=True),
    Column("body", Text, nullable=True),
)
timed_table = Table(
    "timed",
    metadata,
    Column("seq", Integer, primary_key=True),
    Column("at", Float, nullable=False),
)
COLUMNS = ("seq", "label", "number", "body")
AS_JSON = BulkInsert(rows_table, COLUMNS, json_rows=True)
BOUND = BulkInsert(rows_table, COLUMNS)

# Any text SQLite can store (no lone surrogates: neither database takes them), NUL included;
# integers out to SQLite's range and past it; booleans, which both paths store as 0 and 1.
texts = st.none() | st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
numbers = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
row_values = st.tuples(texts, numbers, texts)


@pytest.fixture
def conn() -> Iterator[Connection]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as connection:
        yield connection
    engine.dispose()


def stored(conn: Connection) -> list[tuple[Any, ...]]:
    cursor = conn.connection.cursor()
    try:
        cursor.execute(
            "SELECT seq, label, typeof(label), number, typeof(number), body, typeof(body) "
            "FROM rows ORDER BY seq"
        )
        return list(cursor.fetchall())
    finally:
        cursor.close()


@settings(max_examples=300, deadline=None)
@given(values=st.lists(row_values, max_size=30), slice_rows=st.integers(1, 8))
def test_rows_as_json_are_stored_as_binding_them_stores_them(
    values: list[tuple[str | None, int | bool | None, str | None]], slice_rows: int
) -> None:
    """Whatever the slices (shrunk here, so that JSON and bound slices alternate)."""
    rows = [(seq, *value) for seq, value in enumerate(values)]
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    try:
        with engine.begin() as conn, pytest.MonkeyPatch.context() as patch:
            patch.setattr(raw_sql, "_JSON_SLICE_ROWS", slice_rows)
            AS_JSON.run(conn, rows)
            as_json = stored(conn)
            conn.exec_driver_sql("DELETE FROM rows")
            BOUND.run(conn, rows)
            assert as_json == stored(conn)
    finally:
        engine.dispose()


def test_text_holding_nul_is_stored_whole(conn: Connection) -> None:
    # SQLite's JSON functions end text at an escaped NUL: such rows are bound instead.
    AS_JSON.run(conn, [(1, "a\x00b", 1, "\\u0000 written out")])
    assert stored(conn) == [(1, "a\x00b", "text", 1, "integer", "\\u0000 written out", "text")]


def test_rows_json_cannot_carry_are_bound(conn: Connection) -> None:
    AS_JSON.run(conn, [(1, "bytes", None, b"\x01\x02"), (2, "text", 3, "plain")])
    assert stored(conn) == [
        (1, "bytes", "text", None, "null", b"\x01\x02", "blob"),
        (2, "text", "text", 3, "integer", "plain", "text"),
    ]


def test_a_table_with_floats_is_bound(conn: Connection) -> None:
    # SQLite's JSON number parser need not give back the double that was written.
    at = 0.1 + 0.2
    BulkInsert(timed_table, ("seq", "at"), json_rows=True).run(conn, [(1, at)])
    assert conn.exec_driver_sql("SELECT at FROM timed").scalar_one() == at


def test_many_rows_go_in_slices_each_stored_its_own_way(conn: Connection) -> None:
    # Past one slice of JSON (1,000 rows); the slice holding NUL is bound, the others not.
    rows = [(seq, f"label {seq}", seq, "nul\x00" if seq == 1_500 else None) for seq in range(2_500)]
    AS_JSON.run(conn, rows)
    assert [(row[0], row[1], row[3], row[5]) for row in stored(conn)] == [
        (seq, label, number, body) for seq, label, number, body in rows
    ]
