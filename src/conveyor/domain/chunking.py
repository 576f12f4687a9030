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
from collections.abc import Iterable, Iterator, Sequence
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


def plan_member_chunks(members: Sequence[object | None], chunk_size: int) -> list[ChunkRange]:
    """Cut the operations (``members[seq]`` is the member operation `seq` acts on, or None)
    into consecutive chunks of at least `chunk_size` operations (the last may be shorter),
    each as short as it can be without splitting a member's operations between two chunks.

    Any hashable value stands for a member; only equality matters. A chunk is longer than
    `chunk_size` only when every cut after its first `chunk_size` operations would split a
    member.
    """
    _require_positive("chunk_size", chunk_size)
    last: dict[object, int] = {}
    for seq, member in enumerate(members):
        if member is not None:
            last[member] = seq
    chunks: list[ChunkRange] = []
    start = 0
    # The furthest operation of a member seen in the current chunk: no cut before it.
    reach = -1
    for seq, member in enumerate(members):
        if member is not None:
            reach = max(reach, last[member])
        if seq + 1 - start >= chunk_size and reach <= seq:
            chunks.append(ChunkRange(len(chunks), start, seq + 1))
            start = seq + 1
    if start < len(members):
        chunks.append(ChunkRange(len(chunks), start, len(members)))
    return chunks


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
