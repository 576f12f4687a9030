"""How a batch's operations are cut into chunks (units of background work) and groups.

A chunk is the unit a worker claims with a lease; a group is the slice of a chunk that runs in
one database transaction. Both are half-open ranges of operation sequence numbers, run in seq
order.

Chunks run in parallel, so an order between two operations holds only inside one chunk.
Conveyor promises that the operations on one member (one list and one address) run in
submission order (docs/architecture.md decision 19): chunks are therefore cut only where no
member has operations on both sides of the cut. For the usual batch (each member once, or a
member's operations close together) that is the plain cut every `chunk_size` operations,
moved on by a few; a member whose operations lie far apart keeps everything between them in
one chunk, which then runs longer and alone.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass

import orjson

from conveyor.domain.ids import subscriber_hash
from conveyor.domain.operation_path import UnsafeOperationPath, split_operation_path


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


# One member of one list: (list id, subscriber hash).
MemberKey = tuple[str, str]

# `/lists/{list_id}/members` and `/lists/{list_id}/members/{key}[/...]`, after normalizing.
_MEMBER_PATH = re.compile(r"/lists/([^/]+)/members(?:/([^/]+))?(?:/.*)?")
_HASH = re.compile(r"[0-9a-fA-F]{32}")


def member_of(method: str, path: str, body: str | None) -> MemberKey | None:
    """The member an operation acts on, or None when it acts on no single member.

    The address comes from the path's member key (a subscriber hash, any case, or the email
    address itself) or, for `POST /lists/{id}/members`, from the body's `email_address`. A
    path the executor would refuse, or a body that is not JSON, names no member: such an
    operation fails on its own without touching one.
    """
    try:
        normalized, _ = split_operation_path(path)
    except UnsafeOperationPath:
        return None
    matched = _MEMBER_PATH.fullmatch(normalized)
    if matched is None:
        return None
    list_id, key = matched.group(1), matched.group(2)
    if key is not None:
        if _HASH.fullmatch(key):
            return list_id, key.lower()
        return list_id, subscriber_hash(key.strip())
    if method.upper() != "POST" or not body:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    email = document.get("email_address") if isinstance(document, dict) else None
    if not isinstance(email, str) or not email.strip():
        return None
    return list_id, subscriber_hash(email.strip())


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


def plan_member_chunks(members: Iterable[Hashable | None], chunk_size: int) -> list[ChunkRange]:
    """Cut the operations (``members[seq]`` is the member operation `seq` acts on, or None)
    into consecutive chunks of at least `chunk_size` operations (the last may be shorter),
    each as short as it can be without splitting a member's operations between two chunks.

    Any hashable value stands for a member; members are told apart by their `hash`, so two
    whose hashes are equal only share a chunk. A chunk is longer than `chunk_size` only when
    every cut after its first `chunk_size` operations would split a member.
    """
    return plan_hashed_chunks(
        array("q", (NO_MEMBER if member is None else hash(member) for member in members)),
        chunk_size,
    )


# In `plan_hashed_chunks`, an operation that acts on no single member: `hash()` never
# returns -1 (CPython keeps it for errors).
NO_MEMBER = -1

# Members are counted this many at a time (a slice of the hash space each): a dict of every
# member of a 1,000,000-operation batch and its last seq held ~130 MB while it was planned.
_COUNTED_AT_ONCE = 1 << 14


def plan_hashed_chunks(hashes: array[int], chunk_size: int) -> list[ChunkRange]:
    """`plan_member_chunks` for the members' hashes (`NO_MEMBER` for no member), 8 bytes an
    operation: only members with more than one operation can hold a cut back, and only
    those are kept with their last seq (usually none, or few)."""
    _require_positive("chunk_size", chunk_size)
    last: dict[int, int] = {}
    repeated = _repeated(hashes)
    if repeated:
        for seq, member in enumerate(hashes):
            if member in repeated:
                last[member] = seq
    if not last:
        # Each member once: nothing holds a cut back.
        return plan_chunks(len(hashes), chunk_size)
    chunks: list[ChunkRange] = []
    start = 0
    # The furthest operation of a member seen in the current chunk: no cut before it.
    reach = -1
    for seq, member in enumerate(hashes):
        if member in last:
            reach = max(reach, last[member])
        if seq + 1 - start >= chunk_size and reach <= seq:
            chunks.append(ChunkRange(len(chunks), start, seq + 1))
            start = seq + 1
    if start < len(hashes):
        chunks.append(ChunkRange(len(chunks), start, len(hashes)))
    return chunks


def _repeated(hashes: array[int]) -> set[int]:
    """The members (hashes) with more than one operation."""
    parts = max(1, len(hashes) // _COUNTED_AT_ONCE)
    if parts == 1:
        slices = [hashes]
    else:
        slices = [array("q") for _ in range(parts)]
        for member in hashes:
            if member != NO_MEMBER:
                slices[member % parts].append(member)
    repeated: set[int] = set()
    for part in range(parts):
        counts = Counter(slices[part])
        slices[part] = array("q")  # counted: let it go before the next slice is
        repeated.update(member for member, seen in counts.items() if seen > 1)
    repeated.discard(NO_MEMBER)
    return repeated


def members_of(rows: Iterable[tuple[str, str, str | None]]) -> Iterator[MemberKey | None]:
    """`member_of` for each (method, path, body), in order."""
    for method, path, body in rows:
        yield member_of(method, path, body)


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


# How long one group may hold the database (on SQLite, the one writer lock): every other
# batch's writes (a submit, a claim, a small batch's own group) wait behind it. A group of
# `group_size` per-operation upserts on a busy 2-core machine held it ~0.3 s, which a small
# batch beside a big one paid at each of its seven or so write transactions.
GROUP_TARGET_SECONDS = 0.05
_SMALLEST_GROUP = 10


def next_group_size(
    current: int, seconds: float, largest: int, target: float = GROUP_TARGET_SECONDS
) -> int:
    """The size of a chunk's next group, after a group of `current` operations held the
    database for `seconds`: shrunk toward `GROUP_TARGET_SECONDS` when it held it longer,
    grown back (doubling, up to `largest`) when it was quick."""
    _require_positive("largest", largest)
    if seconds > target:
        scaled = int(current * target / seconds)
        return max(min(scaled, largest), min(_SMALLEST_GROUP, largest))
    if seconds < target / 2:
        return min(current * 2, largest)
    return min(current, largest)
