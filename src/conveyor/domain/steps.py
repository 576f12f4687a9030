"""What runs next: the background steps, and every rule that decides when each one runs.

Each step answers the follow-ups it causes; `plan_next` decides which of them run on in the
same worker call, which are sent to the broker now, and which are left for the scheduler's
sweep; `SWEEP_STEP` says which step picks up a batch that has not moved. These rules used to
live in four files (docs/architecture.md, "What runs next").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from conveyor.domain.states import BatchStatus


class Step(StrEnum):
    PREPROCESS = "preprocess"
    WORK = "work"
    FINALIZE = "finalize"
    CLEANUP = "cleanup"
    DELIVER = "deliver"


@dataclass(frozen=True, slots=True)
class FollowUp:
    step: Step
    # A batch id, or a webhook delivery id for DELIVER.
    target_id: str
    delay_seconds: float = 0.0


# A batch's next stage after preprocessing, and after its last chunk, runs straight on in
# the same worker call. Re-queued, each would wait behind other batches' chunks, so a small
# batch would queue three times; a chunk after a chunk is still re-queued (fairness).
CONTINUE_INLINE = frozenset({(Step.PREPROCESS, Step.WORK), (Step.WORK, Step.FINALIZE)})

# Dramatiq holds a delayed message unacknowledged in the worker until its eta (dramatiq#827),
# and RabbitMQ closes a consumer that sits on one past its `consumer_timeout` (30 minutes).
# Work due later than this is not sent at all: its row stays queued with its due time, and the
# sweep sends it once due (docs/architecture.md, decision 1).
MAX_DELAY_SECONDS = 10 * 60

# The step that resumes a batch whose row has not moved for a while (a lost message, a dead
# worker): the sweep's whole rule.
SWEEP_STEP: Mapping[BatchStatus, Step] = {
    BatchStatus.PENDING: Step.PREPROCESS,
    BatchStatus.PREPROCESSING: Step.PREPROCESS,
    BatchStatus.STARTED: Step.WORK,
    BatchStatus.FINALIZING: Step.FINALIZE,
}


@dataclass
class NextSteps:
    inline: FollowUp | None = None
    send: list[FollowUp] = field(default_factory=list)
    left_for_sweep: list[FollowUp] = field(default_factory=list)


def plan_next(current: Step | None, target_id: str, follow_ups: Iterable[FollowUp]) -> NextSteps:
    """Split what a step (or the API, with `current=None`) caused into what runs on here,
    what goes to the broker, and what waits for the sweep."""
    plan = NextSteps()
    for follow_up in follow_ups:
        if (
            plan.inline is None
            and current is not None
            and (current, follow_up.step) in CONTINUE_INLINE
            and follow_up.target_id == target_id
            and follow_up.delay_seconds == 0
        ):
            plan.inline = follow_up
        elif follow_up.delay_seconds > MAX_DELAY_SECONDS:
            plan.left_for_sweep.append(follow_up)
        else:
            plan.send.append(follow_up)
    return plan
