import pytest

from conveyor.domain.batch_status import (
    BatchCounters,
    BatchStatus,
    StatusRegression,
    advance,
    is_terminal,
)

ORDER = [
    BatchStatus.PENDING,
    BatchStatus.PREPROCESSING,
    BatchStatus.STARTED,
    BatchStatus.FINALIZING,
    BatchStatus.FINISHED,
]


def test_values_match_mailchimp() -> None:
    assert [s.value for s in BatchStatus] == [
        "pending",
        "preprocessing",
        "started",
        "finalizing",
        "finished",
    ]
    assert BatchStatus("started") is BatchStatus.STARTED


@pytest.mark.parametrize("i", range(len(ORDER)))
@pytest.mark.parametrize("j", range(len(ORDER)))
def test_advance_only_moves_forward(i: int, j: int) -> None:
    if j >= i:
        assert advance(ORDER[i], ORDER[j]) is ORDER[j]
    else:
        with pytest.raises(StatusRegression) as info:
            advance(ORDER[i], ORDER[j])
        assert isinstance(info.value, ValueError)
        assert info.value.current is ORDER[i]
        assert info.value.target is ORDER[j]


def test_only_finished_is_terminal() -> None:
    assert [is_terminal(s) for s in ORDER] == [False, False, False, False, True]
    assert BatchStatus.FINISHED.is_terminal


def test_counters_record_counts_errored_within_finished() -> None:
    counters = BatchCounters(total=6)
    after = counters.record([200, 204, 400, 500, 299, 199])
    assert after == BatchCounters(total=6, finished=6, errored=3)
    assert counters == BatchCounters(total=6)
    assert after.is_complete


def test_counters_accumulate_and_accept_generators() -> None:
    counters = BatchCounters(total=10).record(iter([200, 404]))
    counters = counters.record(code for code in [201, 302])
    assert counters == BatchCounters(total=10, finished=4, errored=2)
    assert not counters.is_complete
    assert counters.record([]) == counters


def test_counters_are_immutable() -> None:
    counters = BatchCounters()
    with pytest.raises(AttributeError):
        counters.finished = 3  # type: ignore[misc]


def test_total_never_decreases() -> None:
    counters = BatchCounters(total=5).with_total(8)
    assert counters.total == 8
    with pytest.raises(ValueError):
        counters.with_total(7)


@pytest.mark.parametrize(
    ("total", "finished", "errored"), [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (5, 1, 2)]
)
def test_counters_reject_impossible_values(total: int, finished: int, errored: int) -> None:
    with pytest.raises(ValueError):
        BatchCounters(total, finished, errored)
