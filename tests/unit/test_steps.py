"""What runs next: inline continuation, the broker, or the sweep."""

from __future__ import annotations

from conveyor.domain.states import IN_FLIGHT_BATCH_STATES
from conveyor.domain.steps import MAX_DELAY_SECONDS, SWEEP_STEP, FollowUp, Step, plan_next


def test_a_batch_runs_on_from_preprocess_to_work_and_from_work_to_finalize() -> None:
    plan = plan_next(Step.PREPROCESS, "b1", [FollowUp(Step.WORK, "b1")] * 2)
    assert plan.inline == FollowUp(Step.WORK, "b1")
    assert plan.send == [FollowUp(Step.WORK, "b1")]
    assert plan_next(Step.WORK, "b1", [FollowUp(Step.FINALIZE, "b1")]).inline is not None


def test_a_chunk_after_a_chunk_is_queued_again_for_fairness() -> None:
    plan = plan_next(Step.WORK, "b1", [FollowUp(Step.WORK, "b1")])
    assert plan.inline is None and plan.send == [FollowUp(Step.WORK, "b1")]


def test_nothing_runs_inline_for_another_batch_or_with_a_delay() -> None:
    assert plan_next(Step.PREPROCESS, "b1", [FollowUp(Step.WORK, "b2")]).inline is None
    delayed = FollowUp(Step.WORK, "b1", delay_seconds=1)
    assert plan_next(Step.PREPROCESS, "b1", [delayed]).inline is None
    assert plan_next(None, "", [FollowUp(Step.WORK, "b1")]).inline is None


def test_work_due_later_than_the_broker_may_hold_it_is_left_for_the_sweep() -> None:
    soon = FollowUp(Step.DELIVER, "d1", delay_seconds=MAX_DELAY_SECONDS)
    later = FollowUp(Step.DELIVER, "d2", delay_seconds=MAX_DELAY_SECONDS + 1)
    plan = plan_next(Step.DELIVER, "d0", [soon, later])
    assert plan.send == [soon] and plan.left_for_sweep == [later]


def test_the_sweep_has_a_step_for_every_batch_in_flight() -> None:
    assert set(SWEEP_STEP) == IN_FLIGHT_BATCH_STATES
