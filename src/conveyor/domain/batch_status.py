"""The batch status machine and the batch's operation counters.

Mailchimp has no failed state and clients poll until ``finished``, so a status may only move
forward; a regression would make a client see a batch "un-finish".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class BatchStatus(StrEnum):
    PENDING = "pending"
    PREPROCESSING = "preprocessing"
    STARTED = "started"
    FINALIZING = "finalizing"
    FINISHED = "finished"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    @property
    def is_terminal(self) -> bool:
        return self is BatchStatus.FINISHED


_ORDER: tuple[BatchStatus, ...] = tuple(BatchStatus)


class StatusRegression(ValueError):
    def __init__(self, current: BatchStatus, target: BatchStatus) -> None:
        super().__init__(f"batch status cannot move back from {current} to {target}")
        self.current = current
        self.target = target


def advance(current: BatchStatus, target: BatchStatus) -> BatchStatus:
    """Return ``target`` if it is ``current`` or later.

    Staying put is allowed so that a redelivered message which repeats a transition is harmless.
    """
    if target.rank < current.rank:
        raise StatusRegression(current, target)
    return target


def is_terminal(status: BatchStatus) -> bool:
    return status.is_terminal


def is_success(status_code: int) -> bool:
    return 200 <= status_code <= 299


@dataclass(frozen=True, slots=True)
class BatchCounters:
    total: int = 0
    finished: int = 0
    errored: int = 0

    def __post_init__(self) -> None:
        if min(self.total, self.finished, self.errored) < 0:
            raise ValueError("batch counters cannot be negative")
        if self.errored > self.finished:
            raise ValueError("errored operations are a subset of finished operations")

    def record(self, status_codes: Iterable[int]) -> BatchCounters:
        """Return new counters with these results added.

        ``total`` is left alone: a paged GET adds operations while the batch runs, and the
        caller grows ``total`` separately (``with_total``) rather than inferring it here.
        """
        finished = 0
        errored = 0
        for code in status_codes:
            finished += 1
            if not is_success(code):
                errored += 1
        return BatchCounters(self.total, self.finished + finished, self.errored + errored)

    def with_total(self, total: int) -> BatchCounters:
        if total < self.total:
            raise ValueError(f"total operations cannot decrease from {self.total} to {total}")
        return BatchCounters(total, self.finished, self.errored)

    @property
    def is_complete(self) -> bool:
        return self.finished >= self.total
