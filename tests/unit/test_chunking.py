import pytest

from conveyor.domain.chunking import ChunkRange, plan_chunks, plan_groups


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
