"""Groups prepared outside the writer: answered on a snapshot, written by the writer.

docs/architecture.md decision 21. On SQLite one write lock serializes every group, and a
group's time under it was mostly Python: parsing, deciding and rendering each operation.
A group made only of runs (batches/runs.py) can be answered on a read snapshot instead, in
another process and so on another core, while the writer writes the group before it. The
writer then checks, under its lock, that the list and every member the group looked up are
still as they were read; if so the decisions stand and it writes them with the group's
results, cursor and counters, in the one transaction as always (decision 2). If not, the
group is run again under the lock, the plain way. Nothing is written outside the writer, so
exactly-once is what it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any, NamedTuple, Protocol

import orjson
from sqlalchemy import Connection

from conveyor.batches.runs import (
    HeldMember,
    Run,
    answer_run,
    hold,
    plan_runs,
    run_candidate,
    run_table,
    write_held,
)
from conveyor.domain.accounts import Account
from conveyor.domain.audience import ListContext
from conveyor.domain.chunking import ChunkRange
from conveyor.marketing.routing import RouteTable
from conveyor.storage.batches import BatchStore, StoredOperation
from conveyor.storage.raw_sql import RawSavepoint


class PreparedRun(NamedTuple):
    """A run answered outside the writer, on a snapshot: its answers, its writes, and what
    they were decided from. Its new members carry placeholder web ids, in its answers too."""

    list_id: str
    context: ListContext
    hashes_read: tuple[str, ...]
    contacts_read: tuple[str, ...]
    rows_read: tuple[HeldMember, ...]
    answers: list[tuple[int, str]]
    inserted: list[HeldMember]
    updated: list[HeldMember]

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled for the trip from a helper to the writer, its members as plain tuples: 500
        # named tuples took 1.4 ms to pickle, a third of a group's whole pickle, and their
        # tuples 0.3 ms.
        return _unpickle_run, (
            self.list_id, self.context, self.hashes_read, self.contacts_read,
            [tuple(held) for held in self.rows_read], self.answers,
            [tuple(held) for held in self.inserted], [tuple(held) for held in self.updated],
        )  # fmt: skip


def _unpickle_run(
    list_id: str,
    context: ListContext,
    hashes_read: tuple[str, ...],
    contacts_read: tuple[str, ...],
    rows_read: list[tuple[Any, ...]],
    answers: list[tuple[int, str]],
    inserted: list[tuple[Any, ...]],
    updated: list[tuple[Any, ...]],
) -> PreparedRun:
    held = HeldMember._make
    return PreparedRun(
        list_id, context, hashes_read, contacts_read, tuple(map(held, rows_read)), answers,
        list(map(held, inserted)), list(map(held, updated)),
    )  # fmt: skip


def prepare_run(
    conn: Connection, routes: RouteTable, account: Account, run: Run, *, api_root: str
) -> PreparedRun | None:
    """`run` answered on a read-only snapshot, or None when only the writer can run it."""
    assert routes.stores is not None
    ctx = routes.stores.lists.context(conn, account.pk, run.list_id)
    if ctx is None:
        return None
    table, store = run_table(routes, account, run, ctx, detached=True)
    try:
        answers = answer_run(conn, table, store, account, run, api_root)
    except Exception:
        return None
    inserted, updated = store.changes()
    return PreparedRun(
        run.list_id, ctx, tuple(store.hashes_read), tuple(store.contacts_read),
        tuple(store.rows_read.values()), answers, inserted, updated,
    )  # fmt: skip


def apply_prepared_run(
    conn: Connection, routes: RouteTable, account: Account, prepared: PreparedRun
) -> list[tuple[int, str]] | None:
    """Write a prepared run in the caller's transaction, its web ids given, and answer as it
    did; None, having written nothing, when what it read has changed since (the run must
    then be run again, here). What a run decides follows from its list, the members it
    looked up and nothing else, so the same reads give the same decisions."""
    assert routes.stores is not None
    members = routes.stores.members
    ctx = routes.stores.lists.context(conn, account.pk, prepared.list_id)
    if ctx != prepared.context:
        return None
    assert ctx is not None
    found = members.find_many(conn, ctx.pk, _hashes_to_check(prepared))
    now = {row.web_id: hold(row) for row in found}
    if prepared.contacts_read:
        found = members.find_many(conn, ctx.pk, prepared.contacts_read, by_contact=True)
        now.update((row.web_id, hold(row)) for row in found)
    if now != {held.web_id: held for held in prepared.rows_read}:
        return None
    web_ids: dict[int, int] = {}
    inserted = prepared.inserted
    if inserted:
        allocated = members.allocate_web_ids(conn, len(inserted))
        web_ids = {held.web_id: web_id for held, web_id in zip(inserted, allocated, strict=True)}
        inserted = [held._replace(web_id=web_ids[held.web_id]) for held in inserted]
    write_held(members, conn, account.pk, ctx.pk, inserted, prepared.updated)
    if not web_ids:
        return prepared.answers
    return [(status, with_web_ids(body, web_ids)) for status, body in prepared.answers]


def _hashes_to_check(prepared: PreparedRun) -> list[str]:
    """The hashes whose rows must be read again to know the run's reads still hold: all it
    looked up, but those it found absent and then inserted. Such an address, added by
    someone else since, fails the run's insert on the list's unique (list, hash) index, and
    the run is then run again here as when a read has changed. Checking them here cost the
    writer a lookup per new member (~7 µs each, an upsert batch's whole run)."""
    present = {held.subscriber_hash for held in prepared.rows_read}
    guarded = {held.subscriber_hash for held in prepared.inserted}.difference(present)
    return [key for key in prepared.hashes_read if key not in guarded]


# How a placeholder web id reads in an answer. The key in quotes cannot come from a value
# (quotes inside a JSON string are escaped) and no real web id is negative.
_PLACEHOLDER = '"web_id":-'


def with_web_ids(body: str, web_ids: Mapping[int, int]) -> str:
    """An answer with its placeholder web ids replaced by the ones allocated."""
    # str.find, not a regular expression: this runs on every answer of a run that added
    # members, in the writer's process, and an answer is a whole member (~2 KB).
    at = body.find(_PLACEHOLDER)
    while at >= 0:
        digits = at + len(_PLACEHOLDER)
        end = digits
        while end < len(body) and body[end].isdigit():
            end += 1
        real = str(web_ids[-int(body[digits:end])])
        body = f"{body[: digits - 1]}{real}{body[end:]}"
        at = body.find(_PLACEHOLDER, digits - 1 + len(real))
    return body


class PreparedGroup(NamedTuple):
    batch_id: str
    start: int
    stop: int
    runs: tuple[PreparedRun, ...]


class GroupPreparer(Protocol):
    """Prepares groups, and plans large batches' chunks, elsewhere (runtime/group_helpers.py:
    in helper processes)."""

    def prepare(
        self, account: Account, api_root: str, batch_id: str, start: int, stop: int
    ) -> Future[PreparedGroup | None] | None:
        """The group being prepared, or None when it will not be."""

    def result(self, future: Future[PreparedGroup | None] | None) -> PreparedGroup | None:
        """What was prepared, or None (the group then runs the plain way)."""

    def plan(self, batch_id: str, chunk_size: int) -> list[ChunkRange] | None:
        """The batch's chunks (`BatchStore.plan`) planned elsewhere, or None."""


def operation_params(operation: StoredOperation) -> dict[str, str]:
    return orjson.loads(operation.params) if operation.params else {}


def prepare_group(
    conn: Connection,
    store: BatchStore,
    routes: RouteTable,
    account: Account,
    batch_id: str,
    start: int,
    stop: int,
    *,
    api_root: str,
) -> PreparedGroup | None:
    """Operations [start, stop) answered on `conn`'s snapshot, or None when the group is not
    made of runs only, each on a list of its own (a later run on a list would have to see
    what an earlier one wrote), or a run needs the writer."""
    operations = store.load_operations(conn, batch_id, start, stop)
    if len(operations) != stop - start:
        return None
    candidates = [
        run_candidate(routes, index, op.method, op.path, operation_params(op), op.body)
        for index, op in enumerate(operations)
    ]
    plan = list(plan_runs(candidates))
    runs = [planned for planned in plan if isinstance(planned, Run)]
    if len(runs) != len(plan) or len({run.list_id for run in runs}) != len(runs):
        return None
    prepared: list[PreparedRun] = []
    for run in runs:
        answered = prepare_run(conn, routes, account, run, api_root=api_root)
        if answered is None:
            return None
        prepared.append(answered)
    return PreparedGroup(batch_id, start, stop, tuple(prepared))


def apply_prepared_group(
    conn: Connection, routes: RouteTable, account: Account, prepared: PreparedGroup
) -> list[tuple[int, str]] | None:
    """The group's answers in order, its writes made in the caller's transaction; None,
    with nothing written, when any run's reads have changed since it was prepared."""
    savepoint = RawSavepoint(conn, "prepared").__enter__()
    answers: list[tuple[int, str]] = []
    try:
        for run in prepared.runs:
            applied = apply_prepared_run(conn, routes, account, run)
            if applied is None:
                savepoint.rollback()
                return None
            answers.extend(applied)
    except Exception:
        # A statement failed (an API write took an address meanwhile): run it again here.
        savepoint.rollback()
        return None
    savepoint.release()
    return answers
