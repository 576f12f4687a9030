"""A batch's results come back for its archive in submission order, whole, on either database
(SQLite reads them on the raw cursor, PostgreSQL through a server-side cursor)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.composition import Services
from conveyor.storage.batches import ResultRow

# Any text a response or an operation id can hold, NUL and surrogates aside (unstorable).
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))
RESULT = st.tuples(st.integers(200, 599), st.none() | TEXT, TEXT)


def test_results_come_back_in_submission_order_whole(services: Services) -> None:
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        pages=st.lists(st.lists(RESULT, min_size=1, max_size=3), max_size=30),
        order=st.randoms(use_true_random=False),
    )
    def check(pages: list[list[tuple[int, str | None, str]]], order: random.Random) -> None:
        with services.database.write() as conn:
            batch_id = services.batch_store.create_ingesting(conn, 1, "http://testserver/3.0")
            rows: list[ResultRow] = [
                (batch_id, seq, page, status, operation_id, response)
                for seq, results in enumerate(pages)
                for page, (status, operation_id, response) in enumerate(results)
            ]
            stored = list(rows)
            order.shuffle(stored)
            if stored:
                services.batch_store.insert_results(conn, stored)
        with services.database.snapshot() as conn:
            read = list(services.batch_store.iter_results(conn, batch_id))
        assert read == [(status, op_id, response) for *_, status, op_id, response in rows]

    check()
