"""Every state a batch, a chunk or a webhook delivery can be in, and the moves allowed.

The moves are data: storage checks each compare-and-set against them before it writes, and
the tests read the same tables. A move that is not listed is a bug, never a client error.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar


class BatchStatus(StrEnum):
    # Internal: the body is still being stored; the batch does not exist for clients yet.
    INGESTING = "ingesting"
    # Mailchimp's five, in order. There is no failed state: clients poll until `finished`.
    PENDING = "pending"
    PREPROCESSING = "preprocessing"
    STARTED = "started"
    FINALIZING = "finalizing"
    FINISHED = "finished"
    # Internal: being removed; gone for clients, its rows still going.
    DELETING = "deleting"

    @property
    def is_visible(self) -> bool:
        return self not in HIDDEN_BATCH_STATES


HIDDEN_BATCH_STATES = frozenset({BatchStatus.INGESTING, BatchStatus.DELETING})
UNSTARTED_BATCH_STATES = frozenset({BatchStatus.PENDING, BatchStatus.PREPROCESSING})
# What a cancel may stop: every operation that has not run yet never runs, and the batch goes
# straight to finalizing (its archive holds what did run), so it still ends `finished`.
CANCELABLE_BATCH_STATES = frozenset(
    {BatchStatus.PENDING, BatchStatus.PREPROCESSING, BatchStatus.STARTED}
)
IN_FLIGHT_BATCH_STATES = frozenset(
    {
        BatchStatus.PENDING,
        BatchStatus.PREPROCESSING,
        BatchStatus.STARTED,
        BatchStatus.FINALIZING,
    }
)

# Forward only, one step at a time but for a cancel, which jumps from any cancelable state to
# finalizing; anything may be deleted (DELETE, retention, a failed upload), and deleting is
# the end.
BATCH_MOVES: Mapping[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.INGESTING: frozenset({BatchStatus.PENDING, BatchStatus.DELETING}),
    BatchStatus.PENDING: frozenset(
        {BatchStatus.PREPROCESSING, BatchStatus.FINALIZING, BatchStatus.DELETING}
    ),
    BatchStatus.PREPROCESSING: frozenset(
        {BatchStatus.STARTED, BatchStatus.FINALIZING, BatchStatus.DELETING}
    ),
    BatchStatus.STARTED: frozenset({BatchStatus.FINALIZING, BatchStatus.DELETING}),
    BatchStatus.FINALIZING: frozenset({BatchStatus.FINISHED, BatchStatus.DELETING}),
    BatchStatus.FINISHED: frozenset({BatchStatus.DELETING}),
    BatchStatus.DELETING: frozenset(),
}


class ChunkState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


# RUNNING → RUNNING is a new holder taking a chunk whose lease ran out. → DONE from QUEUED
# (and from RUNNING before its cursor reached the end) is a cancel: what is left never runs,
# and `next_seq` stays where the last committed group left it.
CHUNK_MOVES: Mapping[ChunkState, frozenset[ChunkState]] = {
    ChunkState.QUEUED: frozenset({ChunkState.RUNNING, ChunkState.DONE}),
    ChunkState.RUNNING: frozenset({ChunkState.RUNNING, ChunkState.DONE}),
    ChunkState.DONE: frozenset(),
}


class DeliveryState(StrEnum):
    QUEUED = "queued"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_pending(self) -> bool:
        return self in PENDING_DELIVERY_STATES


PENDING_DELIVERY_STATES = frozenset({DeliveryState.QUEUED, DeliveryState.DELIVERING})

# DELIVERING → DELIVERING is a new sender taking a delivery whose sender died; back to QUEUED
# from anything but DELIVERING is a manual redelivery (a fresh round of attempts).
DELIVERY_MOVES: Mapping[DeliveryState, frozenset[DeliveryState]] = {
    DeliveryState.QUEUED: frozenset(
        {DeliveryState.QUEUED, DeliveryState.DELIVERING, DeliveryState.CANCELLED}
    ),
    DeliveryState.DELIVERING: frozenset(
        {
            DeliveryState.DELIVERING,
            DeliveryState.DELIVERED,
            DeliveryState.QUEUED,
            DeliveryState.FAILED,
            DeliveryState.CANCELLED,
        }
    ),
    DeliveryState.DELIVERED: frozenset({DeliveryState.QUEUED}),
    DeliveryState.FAILED: frozenset({DeliveryState.QUEUED}),
    DeliveryState.CANCELLED: frozenset({DeliveryState.QUEUED}),
}

S = TypeVar("S", bound=StrEnum)


class IllegalMove(ValueError):
    def __init__(self, current: StrEnum, target: StrEnum) -> None:
        super().__init__(f"{type(current).__name__} cannot move from {current} to {target}")
        self.current = current
        self.target = target


def check_move(moves: Mapping[S, frozenset[S]], current: S, target: S) -> None:
    if target not in moves[current]:
        raise IllegalMove(current, target)


def sources(moves: Mapping[S, frozenset[S]], target: S) -> frozenset[S]:
    """Every state from which `target` may be reached in one move."""
    return frozenset(state for state, reachable in moves.items() if target in reachable)


def is_success(status_code: int) -> bool:
    """An operation is errored when its status code is not 2xx (docs/compatibility.md)."""
    return 200 <= status_code <= 299
