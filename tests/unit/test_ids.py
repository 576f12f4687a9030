"""Member ids: Mailchimp's shapes, and a contact_id that sorts by creation time."""

from __future__ import annotations

import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.domain.ids import member_ids

HEX = re.compile(r"[0-9a-f]+")
# Seconds from 1970 to 2112, the range 13 hex digits of microseconds hold.
CREATED = st.floats(min_value=0, max_value=(16**13 - 1) / 1e6, allow_nan=False)


@given(st.floats(min_value=0, max_value=1e10, allow_nan=False))
def test_shapes(created: float) -> None:
    unique_email_id, contact_id = member_ids(created)
    assert len(unique_email_id) == 10 and HEX.fullmatch(unique_email_id)
    assert len(contact_id) == 32 and HEX.fullmatch(contact_id)


@given(CREATED, CREATED)
def test_contact_ids_sort_by_creation_microsecond(first: float, second: float) -> None:
    # A later member's contact_id sorts after an earlier one's, so the contact index is
    # appended to instead of written at random pages.
    a, b = member_ids(first)[1], member_ids(second)[1]
    first_micros, second_micros = int(first * 1e6), int(second * 1e6)
    if first_micros < second_micros:
        assert a < b
    elif first_micros > second_micros:
        assert a > b


def test_ids_drawn_in_one_microsecond_differ() -> None:
    drawn = {member_ids(1_790_000_000.0) for _ in range(1000)}
    assert len({contact for _, contact in drawn}) == 1000
    assert len({unique for unique, _ in drawn}) == 1000


def test_threads_never_draw_the_same_ids() -> None:
    # Each thread draws its own digits from the OS; none may repeat another's.
    def draw(_: int) -> list[tuple[str, str]]:
        return [member_ids(1_790_000_000.0) for _ in range(2_000)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        drawn = [ids for batch in pool.map(draw, range(8)) for ids in batch]
    assert len({contact for _, contact in drawn}) == len(drawn)
    assert len({unique for unique, _ in drawn}) == len(drawn)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    member_ids(0.0)  # the parent has digits in hand when it forks
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Forking a process with threads: this one only draws ids and writes them out.
        warnings.simplefilter("ignore", DeprecationWarning)
        child = os.fork()
    if child == 0:  # pragma: no cover (the child's coverage is not collected)
        try:
            os.write(write_end, ",".join(member_ids(0.0)[1] for _ in range(20)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        in_child = set(pipe.read().decode().split(","))
    os.waitpid(child, 0)
    in_parent = {member_ids(0.0)[1] for _ in range(20)}
    assert len(in_child) == 20
    assert not in_child & in_parent
