"""The per-operation view of a batch: what state each operation is in, and which have not run.

An operation has run when the group that ran it committed: its result rows, its chunk's
cursor and the batch counters move in that one transaction (docs/architecture.md decision
2). So the operations not yet run are exactly the tail of each chunk, from its cursor to its
end, and before chunks are planned, all of them: a few hundred ranges for a million
operations, read without touching the result rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from conveyor.domain.states import is_success


class OperationStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def status_of(status_code: int | None) -> OperationStatus:
    if status_code is None:
        return OperationStatus.PENDING
    return OperationStatus.SUCCEEDED if is_success(status_code) else OperationStatus.FAILED


@dataclass(frozen=True, slots=True)
class SeqRange:
    """Operations `start` ≤ seq < `stop` of a batch."""

    start: int
    stop: int

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)


@dataclass(frozen=True, slots=True)
class ChunkCursor:
    """How far a chunk got: operations `start_seq` ≤ seq < `next_seq` have run."""

    next_seq: int
    stop_seq: int


def not_run(chunks: Iterable[ChunkCursor], operation_count: int) -> list[SeqRange]:
    """The operations that have not run, in order, as ranges.

    Without chunks (the batch is not planned yet, or was canceled before it was) nothing has
    run. A canceled chunk keeps its cursor, so its tail stays here for good.
    """
    planned = sorted(chunks, key=lambda chunk: chunk.next_seq)
    if not planned:
        return [SeqRange(0, operation_count)] if operation_count > 0 else []
    return [
        SeqRange(chunk.next_seq, chunk.stop_seq)
        for chunk in planned
        if chunk.next_seq < chunk.stop_seq
    ]


def slice_ranges(ranges: Iterable[SeqRange], offset: int, count: int) -> list[SeqRange]:
    """The part of the ranges' concatenation from position `offset`, at most `count` long."""
    picked: list[SeqRange] = []
    skip, wanted = offset, count
    for seq_range in ranges:
        if wanted <= 0:
            break
        size = len(seq_range)
        if skip >= size:
            skip -= size
            continue
        start = seq_range.start + skip
        stop = min(seq_range.stop, start + wanted)
        picked.append(SeqRange(start, stop))
        wanted -= stop - start
        skip = 0
    return picked
