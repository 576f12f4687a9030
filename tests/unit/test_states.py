"""The state tables: every move the code makes is listed, and no listed move goes back."""

from __future__ import annotations

import pytest

from conveyor.domain.states import (
    BATCH_MOVES,
    CANCELABLE_BATCH_STATES,
    CHUNK_MOVES,
    DELIVERY_MOVES,
    HIDDEN_BATCH_STATES,
    BatchStatus,
    ChunkState,
    DeliveryState,
    IllegalMove,
    check_move,
    is_success,
    sources,
)

MAILCHIMP_ORDER = [
    BatchStatus.PENDING,
    BatchStatus.PREPROCESSING,
    BatchStatus.STARTED,
    BatchStatus.FINALIZING,
    BatchStatus.FINISHED,
]


def test_visible_values_match_mailchimp() -> None:
    visible = [s.value for s in BatchStatus if s.is_visible]
    assert visible == ["pending", "preprocessing", "started", "finalizing", "finished"]
    assert BatchStatus("started") is BatchStatus.STARTED
    assert {s.value for s in HIDDEN_BATCH_STATES} == {"ingesting", "deleting"}


@pytest.mark.parametrize("i", range(len(MAILCHIMP_ORDER)))
@pytest.mark.parametrize("j", range(len(MAILCHIMP_ORDER)))
def test_status_only_moves_forward_one_step_or_a_cancel(i: int, j: int) -> None:
    current, target = MAILCHIMP_ORDER[i], MAILCHIMP_ORDER[j]
    canceled = current in CANCELABLE_BATCH_STATES and target is BatchStatus.FINALIZING
    if j == i + 1 or canceled:
        check_move(BATCH_MOVES, current, target)
    else:
        with pytest.raises(IllegalMove) as info:
            check_move(BATCH_MOVES, current, target)
        assert isinstance(info.value, ValueError)
        assert info.value.current is current and info.value.target is target


def test_anything_but_deleting_may_be_deleted_and_deleting_is_the_end() -> None:
    assert sources(BATCH_MOVES, BatchStatus.DELETING) == frozenset(BatchStatus) - {
        BatchStatus.DELETING
    }
    assert BATCH_MOVES[BatchStatus.DELETING] == frozenset()


def test_a_batch_becomes_visible_only_when_published() -> None:
    assert sources(BATCH_MOVES, BatchStatus.PENDING) == {BatchStatus.INGESTING}
    with pytest.raises(IllegalMove):
        check_move(BATCH_MOVES, BatchStatus.INGESTING, BatchStatus.STARTED)


def test_a_cancel_jumps_to_finalizing_from_every_state_before_it() -> None:
    cancelable = {BatchStatus.PENDING, BatchStatus.PREPROCESSING, BatchStatus.STARTED}
    assert cancelable == CANCELABLE_BATCH_STATES
    assert sources(BATCH_MOVES, BatchStatus.FINALIZING) == CANCELABLE_BATCH_STATES
    # A canceled batch still ends `finished`, the one state every client waits for.
    assert BATCH_MOVES[BatchStatus.FINALIZING] == {BatchStatus.FINISHED, BatchStatus.DELETING}


def test_only_finished_has_no_way_forward_but_deletion() -> None:
    ends = [s for s in MAILCHIMP_ORDER if BATCH_MOVES[s] <= {BatchStatus.DELETING}]
    assert ends == [BatchStatus.FINISHED]


def test_chunks_run_once_and_a_done_chunk_stays_done() -> None:
    check_move(CHUNK_MOVES, ChunkState.QUEUED, ChunkState.RUNNING)
    check_move(CHUNK_MOVES, ChunkState.RUNNING, ChunkState.RUNNING)  # a lease taken over
    check_move(CHUNK_MOVES, ChunkState.RUNNING, ChunkState.DONE)
    check_move(CHUNK_MOVES, ChunkState.QUEUED, ChunkState.DONE)  # a cancel before it ran
    for target in ChunkState:
        with pytest.raises(IllegalMove):
            check_move(CHUNK_MOVES, ChunkState.DONE, target)
    with pytest.raises(IllegalMove):
        check_move(CHUNK_MOVES, ChunkState.RUNNING, ChunkState.QUEUED)


def test_deliveries_are_sent_under_a_claim_and_redelivered_only_when_not_sending() -> None:
    for ended in (DeliveryState.DELIVERED, DeliveryState.FAILED, DeliveryState.CANCELLED):
        check_move(DELIVERY_MOVES, ended, DeliveryState.QUEUED)
        with pytest.raises(IllegalMove):
            check_move(DELIVERY_MOVES, ended, DeliveryState.DELIVERING)
    # An attempt's outcome is recorded only from DELIVERING.
    assert sources(DELIVERY_MOVES, DeliveryState.DELIVERED) == {DeliveryState.DELIVERING}
    assert sources(DELIVERY_MOVES, DeliveryState.FAILED) == {DeliveryState.DELIVERING}
    assert DeliveryState.QUEUED.is_pending and DeliveryState.DELIVERING.is_pending
    assert not DeliveryState.DELIVERED.is_pending


@pytest.mark.parametrize(("code", "ok"), [(199, False), (200, True), (204, True), (299, True),
                                          (300, False), (404, False), (500, False)])  # fmt: skip
def test_success_is_2xx(code: int, ok: bool) -> None:
    assert is_success(code) is ok
