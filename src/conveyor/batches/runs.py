"""Runs: consecutive member operations on one list, executed as a set.

docs/architecture.md decision 18. A group's operations are planned into runs of member
operations (add, upsert, update, archive, tag, get) on the same list. A run reads all its
members in one query, decides each operation with the very handlers a single HTTP request
runs (the same rules and the same renderer: the two paths cannot drift), and holds every
write in memory, operation by operation, as a savepoint would: an operation that fails keeps
none of its writes. At the end of the run the members are written with one `executemany` of
updates and one of inserts, inside one savepoint. If that write fails (an API request raced
the run for an address), the savepoint is rolled back and the caller runs the same operations
one at a time, each in its own savepoint, as before.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection

from conveyor.domain import problems
from conveyor.domain.accounts import Account
from conveyor.domain.audience import ListContext, MemberRow
from conveyor.domain.clock import Clock, now_iso
from conveyor.domain.ids import subscriber_hash
from conveyor.domain.operation_path import UnsafeOperationPath, split_operation_path
from conveyor.domain.states import is_success
from conveyor.marketing import members as member_routes
from conveyor.marketing.routing import Handler, RouteTable, invoke
from conveyor.storage.errors import UniqueViolation
from conveyor.storage.lists import ListStore
from conveyor.storage.members import MemberStore, member_key
from conveyor.storage.raw_sql import RawSavepoint, dump_json

# The handlers a run may execute: all of them read and write members only through
# `MemberStore.find`, `insert`, `save` and `tag_id`, which the run's store answers.
RUN_HANDLERS: frozenset[Handler] = frozenset(
    {
        member_routes.add_member,
        member_routes.get_member,
        member_routes.upsert_member,
        member_routes.update_member,
        member_routes.archive_member,
        member_routes.change_member_tags,
    }
)
# A run of one gains nothing over the plain path.
MIN_RUN = 2


class RunOperation(NamedTuple):
    """An operation of a run: its index in the group and what `invoke` needs. A named tuple:
    made for every operation of a group, at half the cost of a frozen dataclass."""

    # Its index in the group (`index` would hide the tuple's method).
    position: int
    method: str
    path: str
    query: Mapping[str, str]
    body: str | None
    # Subscriber hashes and contact ids it may look up, read ahead for the whole run.
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Run:
    list_id: str
    operations: list[RunOperation]


def run_candidate(
    routes: RouteTable,
    index: int,
    method: str,
    raw_path: str,
    params: Mapping[str, str],
    body: str | None,
) -> tuple[str, RunOperation] | None:
    """(list id, the operation) when it may join a run; None: it runs the plain way."""
    try:
        path, path_query = split_operation_path(raw_path)
        handler, path_params = routes.resolve(method.upper(), path)
    except (UnsafeOperationPath, problems.Problem):
        return None
    if handler not in RUN_HANDLERS:
        return None
    keys: list[str] = []
    raw_key = path_params.get("subscriber_hash")
    if raw_key is not None:
        keys.append(member_key(raw_key))
    elif (email := _body_email(body)) is not None:
        # An add names its member in the body only. Other addresses a body names (a PUT's,
        # a PATCH's new one) are looked up when a handler asks, which is rare enough.
        keys.append(subscriber_hash(email.strip()))
    query = {**path_query, **params}
    return path_params["list_id"], RunOperation(
        index, method.upper(), path, query, body, tuple(keys)
    )


def _body_email(body: str | None) -> str | None:
    if not body or "email_address" not in body:
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    email = value.get("email_address") if isinstance(value, dict) else None
    return email if isinstance(email, str) else None


def plan_runs(
    candidates: Sequence[tuple[str, RunOperation] | None],
) -> Iterator[Run | int]:
    """The group in order: runs of consecutive candidates on one list, and the index of each
    operation that runs alone."""
    current: list[RunOperation] = []
    current_list = ""

    def close() -> Iterator[Run | int]:
        if len(current) >= MIN_RUN:
            yield Run(current_list, list(current))
        else:
            yield from (op.position for op in current)
        current.clear()

    for index, candidate in enumerate(candidates):
        if candidate is None:
            yield from close()
            yield index
            continue
        list_id, operation = candidate
        if current and list_id != current_list:
            yield from close()
        current_list = list_id
        current.append(operation)
    yield from close()


class HeldMember(NamedTuple):
    """A member as the run holds it: its data as JSON text, so that every read hands out a
    fresh copy that a failing operation may scribble on without harm. A named tuple: a
    prepared run carries these from a preparing process to the writer (`PreparedRun`)."""

    web_id: int
    subscriber_hash: str
    email_address: str
    unique_email_id: str
    contact_id: str
    status: str
    data: str
    last_changed: str

    def row(self) -> MemberRow:
        return MemberRow(
            self.web_id, self.subscriber_hash, self.email_address, self.unique_email_id,
            self.contact_id, self.status, orjson.loads(self.data), self.last_changed,
        )  # fmt: skip


def hold(row: MemberRow) -> HeldMember:
    return HeldMember(
        row.web_id, row.subscriber_hash, row.email_address, row.unique_email_id,
        row.contact_id, row.status, dump_json(row.data), row.last_changed,
    )  # fmt: skip


class RunMemberStore(MemberStore):
    """The members of one list as a run sees them: read once, written at the end.

    Two layers: what the run's committed operations wrote, and what the current operation
    wrote so far (kept on `commit_operation`, dropped on `drop_operation`), so operations on
    one address inside a run behave exactly as they would in sequence.

    A `detached` store answers a run outside the writer (batches/prepared.py): it writes nothing
    at all, so new members get placeholder web ids (-1, -2, ...) and a tag the list lacks
    leaves the run; and it keeps what it read, for the writer to check.
    """

    def __init__(
        self,
        clock: Clock,
        account_pk: int,
        list_pk: int,
        inserts_at_most: int,
        *,
        detached: bool = False,
    ) -> None:
        super().__init__(clock)
        self.account_pk = account_pk
        self.list_pk = list_pk
        self.detached = detached
        self._inserts_at_most = inserts_at_most
        self._ids: Iterator[int] | None = None
        self._held: dict[int, HeldMember] = {}
        self._by_hash: dict[str, int | None] = {}
        self._by_contact: dict[str, int | None] = {}
        self._inserted: set[int] = set()
        self._changed: set[int] = set()
        self._op_held: dict[int, HeldMember] = {}
        self._op_by_hash: dict[str, int | None] = {}
        self._op_inserted: set[int] = set()
        self._tags: dict[str, int] = {}
        # What the run read, as it read it: the keys it looked up and the rows they found.
        self.hashes_read: dict[str, None] = {}
        self.contacts_read: dict[str, None] = {}
        self.rows_read: dict[int, HeldMember] = {}

    # --- reading ahead ---

    def read_ahead(self, conn: Connection, keys: Sequence[str]) -> None:
        """One query for every member the run names by hash, one more for the keys left
        that may be contact ids."""
        wanted = list(dict.fromkeys(keys))
        self.hashes_read.update(dict.fromkeys(wanted))
        for row in self.find_many(conn, self.list_pk, wanted):
            self._adopt(row)
        missing = [key for key in wanted if key not in self._by_hash]
        for key in missing:
            self._by_hash[key] = None
        if missing:
            self.contacts_read.update(dict.fromkeys(missing))
            for row in self.find_many(conn, self.list_pk, missing, by_contact=True):
                self._adopt(row)
            for key in missing:
                self._by_contact.setdefault(key, None)

    def _adopt(self, row: MemberRow) -> None:
        if row.web_id in self._held:
            return
        held = self._held[row.web_id] = hold(row)
        self.rows_read[row.web_id] = held
        self._by_hash[row.subscriber_hash] = row.web_id
        self._by_contact[row.contact_id] = row.web_id

    def _current(self, web_id: int) -> HeldMember | None:
        return self._op_held.get(web_id) or self._held.get(web_id)

    def _owner(self, conn: Connection, hash_: str) -> int | None:
        """The web id of the member holding `hash_` now, looked up once if the run has not."""
        if hash_ in self._op_by_hash:
            return self._op_by_hash[hash_]
        if hash_ not in self._by_hash:
            self.hashes_read[hash_] = None
            found = super().find(conn, self.list_pk, hash_, may_be_contact=False)
            if found is None:
                self._by_hash[hash_] = None
            else:
                self._adopt(found)
        return self._by_hash[hash_]

    # --- the MemberStore the handlers call ---

    def find(
        self, conn: Connection, list_pk: int, raw_key: str, *, may_be_contact: bool = True
    ) -> MemberRow | None:
        if list_pk != self.list_pk:
            if self.detached:
                raise _LeaveRun  # a read nobody would check
            return super().find(conn, list_pk, raw_key, may_be_contact=may_be_contact)
        web_id = self._owner(conn, member_key(raw_key))
        if web_id is None and may_be_contact and "@" not in raw_key:
            web_id = self._by_contact_id(conn, raw_key.lower())
        held = None if web_id is None else self._current(web_id)
        return None if held is None else held.row()

    def _by_contact_id(self, conn: Connection, key: str) -> int | None:
        if key not in self._by_contact:
            self.contacts_read[key] = None
            for row in self.find_many(conn, self.list_pk, [key], by_contact=True):
                self._adopt(row)
            self._by_contact.setdefault(key, None)
        web_id = self._by_contact[key]
        # A member inserted by an operation that then failed is no one's.
        return web_id if web_id is not None and self._current(web_id) is not None else None

    def insert(
        self,
        conn: Connection,
        account_pk: int,
        list_pk: int,
        email: str,
        status: str,
        data: dict[str, Any],
    ) -> MemberRow:
        if list_pk != self.list_pk or account_pk != self.account_pk:
            raise _LeaveRun
        row = self.new_row(email, status, data)
        if self._owner(conn, row.subscriber_hash) is not None:
            raise UniqueViolation(email)
        row.web_id = self._next_id(conn)
        self._op_held[row.web_id] = hold(row)
        self._op_by_hash[row.subscriber_hash] = row.web_id
        self._op_inserted.add(row.web_id)
        self._by_contact[row.contact_id] = row.web_id
        return row

    def save(self, conn: Connection, member: MemberRow) -> None:
        before = self._current(member.web_id)
        if before is None:
            raise _LeaveRun  # not a member of this run's list
        member.last_changed = now_iso(self.clock)
        if member.subscriber_hash != before.subscriber_hash:
            if self._owner(conn, member.subscriber_hash) is not None:
                raise UniqueViolation(member.email_address)
            self._op_by_hash[before.subscriber_hash] = None
            self._op_by_hash[member.subscriber_hash] = member.web_id
        self._op_held[member.web_id] = hold(member)

    def tag_id(self, conn: Connection, list_pk: int, name: str) -> int:
        # Written straight away, not held: no run handler can fail after it names a tag, so
        # no failing operation would have to take one back.
        if list_pk != self.list_pk:
            if self.detached:
                raise _LeaveRun
            return super().tag_id(conn, list_pk, name)
        found = self._tags.get(name)
        if found is None:
            if self.detached:
                # Tags go only with their list, which the writer checks: one found stays.
                found = self._find_tag(conn, list_pk, name)
                if found is None:
                    raise _LeaveRun  # creating it is a write
            else:
                found = super().tag_id(conn, list_pk, name)
            self._tags[name] = found
        return found

    def _next_id(self, conn: Connection) -> int:
        if self._ids is None:
            self._ids = (
                iter(range(-1, -1 - self._inserts_at_most, -1))
                if self.detached
                else iter(self.allocate_web_ids(conn, self._inserts_at_most))
            )
        web_id = next(self._ids, None)
        if web_id is None:
            raise _LeaveRun
        return web_id

    # --- one operation's writes: kept or dropped, as its savepoint would be ---

    def commit_operation(self) -> None:
        self._held.update(self._op_held)
        self._by_hash.update(self._op_by_hash)
        self._inserted |= self._op_inserted
        self._changed.update(self._op_held)
        self.drop_operation()

    def drop_operation(self) -> None:
        self._op_held.clear()
        self._op_by_hash.clear()
        self._op_inserted.clear()

    def changes(self) -> tuple[list[HeldMember], list[HeldMember]]:
        """The members the run inserted, in the order it did (placeholder ids count down),
        and those it updated."""
        inserted: list[HeldMember] = []
        updated: list[HeldMember] = []
        for web_id in sorted(self._changed, key=abs):
            (inserted if web_id in self._inserted else updated).append(self._held[web_id])
        return inserted, updated

    def write(self, conn: Connection) -> None:
        """Every member the run changed: one `executemany` of updates, one of inserts."""
        inserted, updated = self.changes()
        write_held(self, conn, self.account_pk, self.list_pk, inserted, updated)


def write_held(
    members: MemberStore,
    conn: Connection,
    account_pk: int,
    list_pk: int,
    inserted: Sequence[HeldMember],
    updated: Sequence[HeldMember],
) -> None:
    encoded = {held.web_id: held.data for held in (*inserted, *updated)}

    def bare(held: HeldMember) -> MemberRow:
        return MemberRow(
            held.web_id, held.subscriber_hash, held.email_address, held.unique_email_id,
            held.contact_id, held.status, {}, held.last_changed,
        )  # fmt: skip

    members.write_many(
        conn, account_pk, list_pk, [bare(h) for h in inserted], [bare(h) for h in updated],
        encoded,
    )  # fmt: skip


class _RunListStore(ListStore):
    """The lists as a run sees them: its own list's context as read when the run began (no
    run handler changes a list or its merge fields), saving each operation a look into the
    transaction's cache; any other list as the plain store answers it."""

    def __init__(self, lists: ListStore, account_pk: int, list_id: str, ctx: ListContext) -> None:
        super().__init__(lists.clock)
        self._lists = lists
        self._key = (account_pk, list_id)
        self._ctx = ctx

    def context(self, conn: Connection, account_pk: int, list_id: str) -> ListContext | None:
        if (account_pk, list_id) == self._key:
            return self._ctx
        return self._lists.context(conn, account_pk, list_id)


class _LeaveRun(Exception):
    """Something the run does not model: the run is rolled back and goes one at a time."""


def execute_run(
    conn: Connection,
    routes: RouteTable,
    account: Account,
    run: Run,
    *,
    api_root: str,
) -> list[tuple[int, str]] | None:
    """(status, body) for each operation of `run`, its writes applied; None when the run
    must go one at a time instead (nothing of it is left in the database then)."""
    assert routes.stores is not None
    ctx = routes.stores.lists.context(conn, account.pk, run.list_id)
    if ctx is None:
        return None  # each operation answers its 404 on the plain path
    table, store = run_table(routes, account, run, ctx, detached=False)
    savepoint = RawSavepoint(conn, "run").__enter__()
    try:
        answers = answer_run(conn, table, store, account, run, api_root)
        store.write(conn)
    except Exception:
        savepoint.rollback()
        return None
    savepoint.release()
    return answers


def run_table(
    routes: RouteTable, account: Account, run: Run, ctx: ListContext, *, detached: bool
) -> tuple[RouteTable, RunMemberStore]:
    """The routes with the run's stores in place of the plain ones."""
    assert routes.stores is not None
    inserts_at_most = sum(1 for op in run.operations if op.method in ("POST", "PUT"))
    store = RunMemberStore(
        routes.stores.clock, account.pk, ctx.pk, inserts_at_most, detached=detached
    )
    stores = copy.copy(routes.stores)
    stores.members = store
    stores.lists = _RunListStore(routes.stores.lists, account.pk, run.list_id, ctx)
    return dataclasses.replace(routes, stores=stores), store


def answer_run(
    conn: Connection,
    table: RouteTable,
    store: RunMemberStore,
    account: Account,
    run: Run,
    api_root: str,
) -> list[tuple[int, str]]:
    """Each operation of the run, in order, through the handlers: an operation that fails
    keeps none of its writes, as a savepoint would. Raises when the run must not go on."""
    store.read_ahead(conn, [key for op in run.operations for key in op.keys])
    answers: list[tuple[int, str]] = []
    for op in run.operations:
        reply = invoke(table, conn, account, op.method, op.path, op.query, op.body,
                       api_root=api_root)  # fmt: skip
        if reply.status >= 500:
            raise _LeaveRun  # an unexpected failure: let the plain path meet it
        if is_success(reply.status):
            store.commit_operation()
        else:
            store.drop_operation()
        answers.append((reply.status, _encode(reply.body)))
    return answers


def _encode(body: Any) -> str:
    return "" if body is None else orjson.dumps(body).decode()
