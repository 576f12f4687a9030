"""How a batch's operations are cut into chunks (units of background work) and groups.

A chunk is the unit a worker claims with a lease; a group is the slice of a chunk that runs in
one database transaction. Both are half-open ranges of operation sequence numbers, so planning
needs nothing but counts and is the same on every process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChunkRange:
    seq: int
    start: int
    stop: int

    def __post_init__(self) -> None:
        if self.seq < 0 or self.start < 0 or self.stop < self.start:
            raise ValueError(f"invalid chunk range: {self}")

    def __len__(self) -> int:
        return self.stop - self.start

    def operations(self) -> range:
        return range(self.start, self.stop)


def _require_positive(name: str, value: int) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def plan_chunks(total_operations: int, chunk_size: int) -> list[ChunkRange]:
    """Cut ``[0, total_operations)`` into consecutive chunks; an empty batch has no chunks."""
    _require_positive("chunk_size", chunk_size)
    if total_operations < 0:
        raise ValueError(f"total_operations cannot be negative, got {total_operations}")
    return [
        ChunkRange(seq, start, min(start + chunk_size, total_operations))
        for seq, start in enumerate(range(0, total_operations, chunk_size))
    ]


def plan_groups(start: int, stop: int, group_size: int) -> Iterator[range]:
    """Return consecutive sub-ranges of ``[start, stop)`` of at most ``group_size`` operations."""
    # Checked here rather than inside a generator so bad arguments fail at the call site.
    _require_positive("group_size", group_size)
    if start < 0 or stop < start:
        raise ValueError(f"invalid range [{start}, {stop})")
    return (
        range(group_start, min(group_start + group_size, stop))
        for group_start in range(start, stop, group_size)
    )
