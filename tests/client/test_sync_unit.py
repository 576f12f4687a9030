"""The pure parts of the sync, and its chunking on a real SQLite database: reading chunk by
chunk after watermarks gives every row once, in order, and a chunk's bounds read it again."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.client.dbsync.errors import SyncError
from conveyor.client.dbsync.mapping import MappingError, MemberMapping, parse_map_option
from conveyor.client.dbsync.source import (
    SourceQuery,
    decode_watermark,
    encode_watermark,
)
from conveyor.client.dbsync.state import ChunkState, FileState, SyncState, TableState


def test_columns_map_to_a_member() -> None:
    columns = ["id", "email", "status", "tags", "FNAME", "last", "PHONE", "updated_at"]
    mapping = MemberMapping.resolve(
        columns, merge_map=parse_map_option(["last=LNAME"]), reserved=["id", "updated_at"]
    )
    row = (7, " Ann@Example.org ", "Pending", "vip, ,news", "Ann", "Lee", None, "2024")
    operation = mapping.upsert("L1", row, "7", status_if_new="subscribed")
    assert operation["method"] == "PUT" and operation["operation_id"] == "7"
    assert json.loads(operation["body"]) == {
        "email_address": "Ann@Example.org",
        "merge_fields": {"FNAME": "Ann", "LNAME": "Lee"},  # PHONE is empty: left alone
        "status_if_new": "pending",
    }
    assert mapping.tags_of(row) == ["vip", "news"]
    assert mapping.tags_of((*row[:3], ["a", "b"], *row[4:])) == ["a", "b"]
    tagging = mapping.tag("L1", row, "7")
    assert tagging is not None and tagging["path"].endswith("/tags")
    with pytest.raises(MappingError, match="no 'mail' column"):
        MemberMapping.resolve(columns, email_column="mail")
    with pytest.raises(MappingError, match="COLUMN=MERGE_TAG"):
        parse_map_option(["first_name"])
    with pytest.raises(MappingError, match="not a merge tag"):
        parse_map_option(["first_name=first"])


@given(
    st.lists(
        st.one_of(
            st.integers(-(2**40), 2**40),
            st.text(max_size=5),
            st.datetimes(min_value=dt.datetime(1900, 1, 1)),
            st.dates(),
            st.decimals(allow_nan=False, allow_infinity=False, places=3),
            st.none(),
        ),
        max_size=3,
    )
)
def test_watermarks_survive_the_state_file(values: list[object]) -> None:
    mark = tuple(values)
    stored = json.loads(json.dumps(encode_watermark(mark)))
    assert decode_watermark(stored) == mark
    assert [type(v) for v in decode_watermark(stored) or ()] == [type(v) for v in mark]


@settings(max_examples=40, deadline=None)
@given(
    since=st.lists(st.integers(0, 6), min_size=0, max_size=60),
    chunk=st.integers(1, 9),
    with_since=st.booleans(),
)
def test_chunks_after_watermarks_read_every_row_once_in_order(
    since: list[int], chunk: int, with_since: bool
) -> None:
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, at INTEGER, email TEXT)"))
        if since:
            # Keys out of insertion order, and since values with ties.
            rows = [{"id": (i * 7919) % 1000 + 1, "at": s} for i, s in enumerate(since)]
            unique = {row["id"]: row for row in rows}
            conn.execute(sa.text("INSERT INTO t VALUES (:id, :at, 'x')"), list(unique.values()))
    source = SourceQuery(engine, "SELECT id, at, email FROM t;", "id", "at" if with_since else None)
    columns = source.columns()
    positions = source.order_positions(columns)
    with engine.connect() as conn:
        everything = [tuple(row) for row in source.rows(conn, None)]
        chunks: list[tuple[Any, Any, list[tuple[object, ...]]]] = []
        after = None
        while True:
            part = [tuple(row) for row in source.rows(conn, after, limit=chunk)]
            if not part:
                break
            end = tuple(part[-1][p] for p in positions)
            chunks.append((after, end, part))
            after = end
        # Every chunk read again from its stored bounds is the same rows.
        for start, end, part in chunks:
            again = [
                tuple(row)
                for row in source.rows(
                    conn,
                    decode_watermark(encode_watermark(start)),
                    decode_watermark(encode_watermark(end)),
                )
            ]
            assert again == part
    assert [row for _, _, part in chunks for row in part] == everything
    expected = sorted(everything, key=lambda row: tuple(row[p] for p in positions))
    assert everything == expected
    assert source.count(None) == len(everything)


def test_state_stores_round_trip_and_refuse_another_syncs_state(tmp_path: Path) -> None:
    state = SyncState("abc", watermark=[{"datetime": "2024-01-01T00:00:00"}, 5])
    state.chunk = ChunkState(seq=2, start=None, end=[1], rows=10, idempotency_key="k")
    store = FileState(tmp_path / "s.json")
    store.save(state)
    assert store.load("abc") == state
    with pytest.raises(SyncError, match="another sync"):
        store.load("other")
    table = TableState(sa.create_engine(f"sqlite:///{tmp_path / 'db'}"), "sync_state")
    assert table.load("abc") is None
    table.save(state)
    state.chunk.batch_id = "b"
    table.save(state)
    assert table.load("abc") == state
