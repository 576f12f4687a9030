"""The operations view's pure parts: statuses, the ranges not run, slicing across ranges."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from conveyor.domain.operation_view import (
    ChunkCursor,
    OperationStatus,
    SeqRange,
    not_run,
    slice_ranges,
    status_of,
)


def test_status_of_a_result() -> None:
    assert status_of(None) is OperationStatus.PENDING
    assert status_of(200) is OperationStatus.SUCCEEDED
    assert status_of(204) is OperationStatus.SUCCEEDED
    assert status_of(299) is OperationStatus.SUCCEEDED
    assert status_of(199) is OperationStatus.FAILED
    assert status_of(400) is OperationStatus.FAILED
    assert status_of(500) is OperationStatus.FAILED


def test_before_planning_nothing_has_run() -> None:
    assert not_run([], 7) == [SeqRange(0, 7)]
    assert not_run([], 0) == []


def test_each_chunk_leaves_its_tail() -> None:
    chunks = [ChunkCursor(45, 50), ChunkCursor(7, 20), ChunkCursor(40, 40), ChunkCursor(20, 40)]
    assert not_run(chunks, 50) == [SeqRange(7, 20), SeqRange(20, 40), SeqRange(45, 50)]
    assert not_run([ChunkCursor(20, 20), ChunkCursor(40, 40)], 40) == []


@given(
    sizes=st.lists(st.integers(0, 6), max_size=6),
    offset=st.integers(0, 40),
    count=st.integers(0, 40),
)
def test_a_slice_of_ranges_is_the_slice_of_their_concatenation(
    sizes: list[int], offset: int, count: int
) -> None:
    ranges, start = [], 0
    for size in sizes:
        ranges.append(SeqRange(start, start + size))
        start += size + 3  # gaps between ranges, as between chunk tails
    flat = [seq for seq_range in ranges for seq in range(seq_range.start, seq_range.stop)]
    picked = slice_ranges(ranges, offset, count)
    assert [seq for r in picked for seq in range(r.start, r.stop)] == flat[offset : offset + count]
    assert all(len(r) > 0 for r in picked)
