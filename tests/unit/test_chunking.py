import tracemalloc
from array import array
from unittest import mock

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from conveyor.domain import chunking
from conveyor.domain.chunking import (
    GROUP_TARGET_SECONDS,
    NO_MEMBER,
    ChunkRange,
    member_of,
    next_group_size,
    plan_chunks,
    plan_groups,
    plan_hashed_chunks,
    plan_member_chunks,
)
from conveyor.domain.ids import subscriber_hash


def test_plan_chunks_covers_every_operation_once() -> None:
    chunks = plan_chunks(2_501, 1_000)
    assert chunks == [
        ChunkRange(0, 0, 1_000),
        ChunkRange(1, 1_000, 2_000),
        ChunkRange(2, 2_000, 2_501),
    ]
    covered = [i for chunk in chunks for i in chunk.operations()]
    assert covered == list(range(2_501))
    assert [len(c) for c in chunks] == [1_000, 1_000, 501]


def test_plan_chunks_exact_multiple_and_small() -> None:
    assert plan_chunks(2_000, 1_000) == [ChunkRange(0, 0, 1_000), ChunkRange(1, 1_000, 2_000)]
    assert plan_chunks(1, 1_000) == [ChunkRange(0, 0, 1)]


def test_plan_chunks_of_empty_batch_is_empty() -> None:
    assert plan_chunks(0, 10) == []


@pytest.mark.parametrize(("total", "size"), [(10, 0), (10, -1), (-1, 10)])
def test_plan_chunks_rejects_bad_arguments(total: int, size: int) -> None:
    with pytest.raises(ValueError):
        plan_chunks(total, size)


def test_plan_groups_splits_a_chunk() -> None:
    assert list(plan_groups(1_000, 1_250, 100)) == [
        range(1_000, 1_100),
        range(1_100, 1_200),
        range(1_200, 1_250),
    ]
    assert list(plan_groups(5, 5, 100)) == []


@pytest.mark.parametrize(
    ("start", "stop", "size"), [(0, 10, 0), (0, 10, -5), (10, 5, 2), (-1, 3, 2)]
)
def test_plan_groups_rejects_bad_arguments_at_call_time(start: int, stop: int, size: int) -> None:
    with pytest.raises(ValueError):
        plan_groups(start, stop, size)


def test_chunk_range_is_frozen_and_validated() -> None:
    chunk = ChunkRange(0, 0, 10)
    with pytest.raises(AttributeError):
        chunk.stop = 5  # type: ignore[misc]
    with pytest.raises(ValueError):
        ChunkRange(0, 10, 5)


# --- keeping each member's operations in one chunk ---------------------------------------

_HASH = subscriber_hash("ann@example.org")


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("POST", "lists/L1/members", '{"email_address": " Ann@Example.org "}', ("L1", _HASH)),
        ("POST", "/3.0/lists/L1/members/", '{"email_address": "ann@example.org"}', ("L1", _HASH)),
        ("PUT", f"/lists/L1/members/{_HASH.upper()}", None, ("L1", _HASH)),
        ("PATCH", "/lists/L1/members/ANN@example.org", "{}", ("L1", _HASH)),
        ("POST", f"/lists/L1/members/{_HASH}/tags", "{}", ("L1", _HASH)),
        ("GET", f"/lists/L1/members/{_HASH}?fields=id", None, ("L1", _HASH)),
        ("DELETE", f"/lists/L2/members/{_HASH}", None, ("L2", _HASH)),
        ("GET", "/lists/L1/members", None, None),
        ("POST", "/lists/L1/members", "not json", None),
        ("POST", "/lists/L1/members", '{"email_address": 5}', None),
        ("POST", "/lists/L1/members", "[1]", None),
        ("POST", "/lists/L1", '{"members": []}', None),
        ("GET", "/lists/../batches", None, None),
        ("GET", "/ping", None, None),
    ],
)
def test_member_of_reads_the_path_or_the_posted_address(
    method: str, path: str, body: str | None, expected: tuple[str, str] | None
) -> None:
    assert member_of(method, path, body) == expected


def test_plan_member_chunks_is_the_plain_cut_for_distinct_members() -> None:
    assert plan_member_chunks(list(range(2_501)), 1_000) == plan_chunks(2_501, 1_000)
    assert plan_member_chunks([None] * 5, 2) == plan_chunks(5, 2)
    assert plan_member_chunks([], 3) == []


def test_plan_member_chunks_moves_a_cut_past_a_member() -> None:
    # Member "a" at 1 and 4: no cut at 2, 3 or 4 keeps it whole, so the first chunk is 0-4;
    # "b" at 6 and 7 keeps the rest together.
    members = [None, "a", None, None, "a", None, "b", "b", None, None]
    assert plan_member_chunks(members, 2) == [
        ChunkRange(0, 0, 5),
        ChunkRange(1, 5, 8),
        ChunkRange(2, 8, 10),
    ]


def test_plan_member_chunks_posts_then_updates_is_one_chunk() -> None:
    # Every member posted in the first half and updated in the second: no cut is possible.
    members = list(range(50)) + list(range(50))
    assert plan_member_chunks(members, 10) == [ChunkRange(0, 0, 100)]


@given(
    members=st.lists(st.one_of(st.none(), st.integers(0, 30)), max_size=300),
    chunk_size=st.integers(1, 40),
)
def test_plan_member_chunks_keeps_members_whole_and_chunks_short(
    members: list[int | None], chunk_size: int
) -> None:
    chunks = plan_member_chunks(members, chunk_size)
    # Every operation in exactly one chunk, chunks in seq order and numbered in order.
    assert [seq for chunk in chunks for seq in chunk.operations()] == list(range(len(members)))
    assert [chunk.seq for chunk in chunks] == list(range(len(chunks)))
    # Each member's operations in one chunk (chunks run in seq order: in submission order).
    chunk_of = {seq: chunk.seq for chunk in chunks for seq in chunk.operations()}
    for member in {m for m in members if m is not None}:
        assert len({chunk_of[seq] for seq, m in enumerate(members) if m == member}) == 1
    # Balanced: every chunk but the last has at least chunk_size operations, and one is
    # longer only when each cut after its first chunk_size operations would split a member.
    for chunk in chunks[:-1]:
        assert len(chunk) >= chunk_size
    for chunk in chunks:
        for cut in range(chunk.start + chunk_size, chunk.stop):
            before = {m for m in members[chunk.start : cut] if m is not None}
            after = {m for m in members[cut:] if m is not None}
            assert before & after, f"{chunk} could have been cut at {cut}"


def _plan_with_every_member(members: list[int | None], chunk_size: int) -> list[ChunkRange]:
    """The plan as it was first written: every member's last seq in one dict."""
    last = {member: seq for seq, member in enumerate(members) if member is not None}
    chunks: list[ChunkRange] = []
    start, reach = 0, -1
    for seq, member in enumerate(members):
        if member is not None:
            reach = max(reach, last[member])
        if seq + 1 - start >= chunk_size and reach <= seq:
            chunks.append(ChunkRange(len(chunks), start, seq + 1))
            start = seq + 1
    if start < len(members):
        chunks.append(ChunkRange(len(chunks), start, len(members)))
    return chunks


@given(
    members=st.lists(st.one_of(st.none(), st.integers(-5, 40)), max_size=300),
    chunk_size=st.integers(1, 40),
)
@example(members=[-1, -2], chunk_size=1)  # two members, one hash
def test_plan_hashed_chunks_counted_in_slices_is_the_same_plan(
    members: list[int | None], chunk_size: int
) -> None:
    keys = [None if m is None else hash(m) for m in members]
    hashes = array("q", (NO_MEMBER if key is None else key for key in keys))
    # Over the hashes, as the plan sees members: two members sharing one (in CPython
    # hash(-1) == hash(-2)) share a chunk, which only makes it longer.
    expected = _plan_with_every_member(keys, chunk_size)
    assert plan_hashed_chunks(hashes, chunk_size) == expected
    # Members counted a few at a time (a slice of the hash space each), as a big batch's are.
    with mock.patch.object(chunking, "_COUNTED_AT_ONCE", 4):
        assert plan_hashed_chunks(hashes, chunk_size) == expected


def test_plan_hashed_chunks_holds_little_beside_the_hashes() -> None:
    # 300,000 members, two of them with operations far apart; a dict of every member and
    # its last seq (the plan's first way) traced ~36 MB here.
    hashes = array("q", (hash(("list", f"{i:032x}")) for i in range(300_000)))
    hashes[200_000] = hashes[1_000]
    hashes[150_000] = NO_MEMBER
    tracemalloc.start()
    try:
        chunks = plan_hashed_chunks(hashes, 2_500)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak
    assert chunks[0] == ChunkRange(0, 0, 200_001)
    assert chunks[1:] == [
        ChunkRange(seq, start, min(start + 2_500, 300_000))
        for seq, start in enumerate(range(200_001, 300_000, 2_500), 1)
    ]


def test_next_group_size_holds_the_writer_near_the_target() -> None:
    target = GROUP_TARGET_SECONDS
    # Too long: shrunk in proportion, never below ten (nor above the largest).
    assert next_group_size(500, target * 4, 500) == 125
    assert next_group_size(500, 100.0, 500) == 10
    assert next_group_size(500, 100.0, 5) == 5
    # Quick: doubled back up to the largest; near the target: kept.
    assert next_group_size(100, target / 4, 500) == 200
    assert next_group_size(400, 0.0, 500) == 500
    assert next_group_size(100, target * 0.75, 500) == 100
    with pytest.raises(ValueError):
        next_group_size(10, 0.1, 0)
