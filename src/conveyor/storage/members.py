"""Member and tag SQL: the reads and writes the member, tag and batch-subscribe handlers share.

The statements every member operation issues run on the DBAPI cursor (`raw_sql`): the batch
hot path (docs/architecture.md, "A hot path below SQLAlchemy's execute").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.domain.audience import ARCHIVED, FORGOTTEN, MemberRow
from conveyor.domain.clock import Clock, iso_at, now_iso
from conveyor.domain.ids import member_ids, subscriber_hash
from conveyor.storage.errors import UniqueViolation, is_unique_violation
from conveyor.storage.raw_sql import BulkInsert, RawStatement, dump_json, load_json
from conveyor.storage.tables import members, tags

_MEMBER_COLUMNS = (
    members.c.web_id,
    members.c.subscriber_hash,
    members.c.email_address,
    members.c.unique_email_id,
    members.c.contact_id,
    members.c.status,
    members.c.data,
    members.c.last_changed,
)

_MEMBER_BY_HASH = RawStatement(
    select(*_MEMBER_COLUMNS).where(
        and_(
            members.c.list_pk == bindparam("list_pk"),
            members.c.subscriber_hash == bindparam("h"),
        )
    )
)
# Looked up apart: `hash = ? OR contact_id = ?` made SQLite scan the whole list. By the
# contact index only: `list_pk + 0` is no index's leading column, so a list the statistics
# still see empty cannot get the (list_pk, subscriber_hash) index with a filter on
# contact_id, a scan of the whole list for each key (PostgreSQL's plan on a list filled
# since its last ANALYZE: 20 ms a key at 48,000 members).
_MEMBER_BY_CONTACT = RawStatement(
    select(*_MEMBER_COLUMNS).where(
        and_(
            (members.c.list_pk + literal_column("0")) == bindparam("list_pk"),
            members.c.contact_id == bindparam("h"),
        )
    )
)


def _insert_member(insert: Any) -> RawStatement:
    # ON CONFLICT DO NOTHING: an address another transaction added since our lookup gives no
    # row back instead of an error, which on PostgreSQL would abort the whole transaction
    # (a PUT then updates the member it raced with).
    return RawStatement(
        insert(members)
        .values(
            {
                name: bindparam(name)
                for name in (
                    "account_pk", "list_pk", "subscriber_hash", "email_address",
                    "unique_email_id", "contact_id", "status", "data", "last_changed",
                )
            }
        )
        .on_conflict_do_nothing(index_elements=["list_pk", "subscriber_hash"])
        .returning(members.c.web_id)
    )  # fmt: skip


_INSERT_MEMBER = {
    "postgresql": _insert_member(postgresql.insert),
    "sqlite": _insert_member(sqlite.insert),
}
_UPDATE_MEMBER = RawStatement(
    members.update()
    .where(members.c.web_id == bindparam("b_web_id"))
    .values(
        email_address=bindparam("email_address"),
        subscriber_hash=bindparam("subscriber_hash"),
        status=bindparam("status"),
        data=bindparam("data"),
        last_changed=bindparam("last_changed"),
    )
)


# The rows of `write_many` are tuples in the order SQLite's compiled statements take their
# parameters: no dict per row to build and take apart again.
_UPDATE_COLUMNS = ("subscriber_hash", "email_address", "status", "data", "last_changed", "b_web_id")
_INSERT_COLUMNS = (
    "web_id", "account_pk", "list_pk", "subscriber_hash", "email_address",
    "unique_email_id", "contact_id", "status", "data", "last_changed",
)  # fmt: skip

# A plain INSERT, web id given: a run allocates its ids first (`allocate_web_ids`) so that it
# can answer with the rows before writing them in one `executemany`.
_INSERT_MEMBER_WITH_ID = BulkInsert(members, _INSERT_COLUMNS)

# Many keys in one parameter: a JSON array on SQLite, an array on PostgreSQL, so that one
# statement text serves any number of keys.
_SELECT_MEMBERS = (
    "SELECT web_id, subscriber_hash, email_address, unique_email_id, contact_id, status,"
    " data, last_changed FROM members WHERE list_pk = "
)
# On PostgreSQL one index probe per key (a LATERAL join over the array): `= ANY(array)` on a
# members table grown since its last ANALYZE was planned as a scan of the whole list, a pass
# over every member of the list for each run. `OFFSET 0` keeps the planner from pulling the
# LATERAL subquery up into a plain join: pulled up, a list the statistics still saw empty
# (one filling during the batch, before autovacuum's ANALYZE) was planned as a hash join over
# every member of the list, and psycopg's prepared statement kept that custom plan: 100 ms
# per run of 500 at 48,000 members, quadratic again (measured with bench.scale, 2026-11-29).
# The contact lookup compares `list_pk + 0` for the reason given at `_MEMBER_BY_CONTACT`.
_LATERAL = "SELECT m.* FROM unnest(%s::text[]) AS wanted(key) CROSS JOIN LATERAL ("
_MEMBERS_BY_HASHES = {
    "sqlite": f"{_SELECT_MEMBERS}? AND subscriber_hash IN (SELECT value FROM json_each(?))",
    "postgresql": f"{_LATERAL}{_SELECT_MEMBERS}%s AND subscriber_hash = wanted.key OFFSET 0) AS m",
}
_MEMBERS_BY_CONTACTS = {
    "sqlite": f"{_SELECT_MEMBERS}? AND contact_id IN (SELECT value FROM json_each(?))",
    "postgresql": f"{_LATERAL}{_SELECT_MEMBERS.replace('list_pk =', 'list_pk + 0 =')}%s"
    " AND contact_id = wanted.key OFFSET 0) AS m",
}
_KEYS_PER_QUERY = 1000


@dataclass(frozen=True, slots=True)
class MemberQuery:
    """Which of a list's members a page shows, and in which order. Times are in the form
    the API answers with (`domain.timestamps.answer_form`), so they compare as text."""

    # One status; None: every member but archived (and erased) ones, as the real service.
    status: str | None = None
    email_type: str | None = None
    unique_email_id: str | None = None
    vip_only: bool = False
    since_last_changed: str | None = None
    before_last_changed: str | None = None
    since_timestamp_opt: str | None = None
    before_timestamp_opt: str | None = None
    # Members whose `interests` mark these ids true: "any" of them, "all", or "none".
    interest_ids: tuple[str, ...] = ()
    interest_match: str = "any"
    # "timestamp_opt", "timestamp_signup" or "last_changed"; None: the order of creation.
    sort_field: str | None = None
    descending: bool = False


def _member_filters(query: MemberQuery) -> list[Any]:
    data = members.c.data
    where: list[Any] = []
    if query.status:
        where.append(members.c.status == query.status)
    else:
        where.append(members.c.status.not_in([FORGOTTEN, ARCHIVED]))
    if query.email_type is not None:
        where.append(data["email_type"].as_string() == query.email_type)
    if query.unique_email_id is not None:
        where.append(members.c.unique_email_id == query.unique_email_id)
    if query.vip_only:
        where.append(data["vip"].as_boolean() == true())
    for column, since, before in (
        (members.c.last_changed, query.since_last_changed, query.before_last_changed),
        (data["timestamp_opt"].as_string(), query.since_timestamp_opt, query.before_timestamp_opt),
    ):
        if since is not None:
            where.append(column >= since)
        if before is not None:
            where.append(and_(column != "", column < before))
    if query.interest_ids:
        marked = [
            func.coalesce(data[("interests", interest)].as_boolean(), false()) == true()
            for interest in query.interest_ids
        ]
        if query.interest_match == "all":
            where.append(and_(*marked))
        elif query.interest_match == "none":
            where.append(not_(or_(*marked)))
        else:
            where.append(or_(*marked))
    return where


def member_key(raw: str) -> str:
    """The path's member reference: a subscriber hash, an email address or a contact id."""
    return subscriber_hash(raw) if "@" in raw else raw.lower()


def _member(row: Any) -> MemberRow:
    web_id, hash_, email, unique_id, contact_id, status, data, last_changed = row
    return MemberRow(
        int(web_id), hash_, email, unique_id, contact_id, status, load_json(data), last_changed
    )


class MemberStore:
    """Members of lists and the lists' tags, with time from `clock`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def find(
        self, conn: Connection, list_pk: int, raw_key: str, *, may_be_contact: bool = True
    ) -> MemberRow | None:
        """The member a path names (hash, address or contact id), forgotten ones included."""
        params = {"list_pk": list_pk, "h": member_key(raw_key)}
        row = _MEMBER_BY_HASH.first(conn, params)
        if row is None and may_be_contact and "@" not in raw_key:
            row = _MEMBER_BY_CONTACT.first(conn, params)
        return None if row is None else _member(row)

    def new_row(self, email: str, status: str, data: dict[str, Any]) -> MemberRow:
        """A member about to be inserted (web_id 0 until it is): its ids and first times."""
        created = self.clock.now()
        now = iso_at(created)
        if status == "subscribed" and not data["timestamp_opt"]:
            data["timestamp_opt"] = now
        unique_email_id, contact_id = member_ids(created)
        return MemberRow(
            web_id=0,
            subscriber_hash=subscriber_hash(email),
            email_address=email,
            unique_email_id=unique_email_id,
            contact_id=contact_id,
            status=status,
            data=data,
            last_changed=now,
        )

    def insert(
        self,
        conn: Connection,
        account_pk: int,
        list_pk: int,
        email: str,
        status: str,
        data: dict[str, Any],
    ) -> MemberRow:
        """A new member; `UniqueViolation` when another transaction added the address first."""
        row = self.new_row(email, status, data)
        now = row.last_changed
        try:
            inserted = _INSERT_MEMBER[conn.dialect.name].first(
                conn,
                {
                    "account_pk": account_pk,
                    "list_pk": list_pk,
                    "subscriber_hash": row.subscriber_hash,
                    "email_address": email,
                    "unique_email_id": row.unique_email_id,
                    "contact_id": row.contact_id,
                    "status": status,
                    "data": dump_json(data),
                    "last_changed": now,
                },
            )
        except Exception as exc:
            # On PostgreSQL two transactions can both miss the address in their lookup; the
            # unique index lets one insert it.
            if is_unique_violation(exc):
                raise UniqueViolation(email) from None
            raise
        if inserted is None:
            raise UniqueViolation(email)
        row.web_id = int(inserted[0])
        return row

    def save(self, conn: Connection, member: MemberRow) -> None:
        """Write the member back; `UniqueViolation` when its new address is taken."""
        member.last_changed = now_iso(self.clock)
        try:
            _UPDATE_MEMBER.run(
                conn,
                {
                    "b_web_id": member.web_id,
                    "email_address": member.email_address,
                    "subscriber_hash": member.subscriber_hash,
                    "status": member.status,
                    "data": dump_json(member.data),
                    "last_changed": member.last_changed,
                },
            )
        except Exception as exc:
            if is_unique_violation(exc):
                raise UniqueViolation(member.email_address) from None
            raise

    # --- set-wise: a run of operations reads its members at once and writes them at once ---

    def find_many(
        self, conn: Connection, list_pk: int, keys: Sequence[str], *, by_contact: bool = False
    ) -> list[MemberRow]:
        """The list's members whose subscriber hash (or contact id) is one of `keys`."""
        statements = _MEMBERS_BY_CONTACTS if by_contact else _MEMBERS_BY_HASHES
        sql = statements[conn.dialect.name]
        found: list[MemberRow] = []
        cursor = conn.connection.cursor()
        try:
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), _KEYS_PER_QUERY):
                part = unique[start : start + _KEYS_PER_QUERY]
                if conn.dialect.name == "sqlite":
                    cursor.execute(sql, (list_pk, dump_json(part)))
                else:
                    cursor.execute(sql, (part, list_pk))
                found.extend(_member(row) for row in cursor.fetchall())
        finally:
            cursor.close()
        return found

    def allocate_web_ids(self, conn: Connection, count: int) -> list[int]:
        """`count` web ids no member has, for rows the caller inserts in this transaction.

        SQLite: above the largest (the group's transaction holds the write lock, so no one
        else inserts meanwhile). PostgreSQL: taken from the column's sequence, as a plain
        INSERT would.
        """
        cursor = conn.connection.cursor()
        try:
            if conn.dialect.name == "sqlite":
                cursor.execute("SELECT COALESCE(MAX(web_id), 0) FROM members")
                top = int(cursor.fetchone()[0])  # type: ignore[index]
                return list(range(top + 1, top + 1 + count))
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence('members', 'web_id'))"
                " FROM generate_series(1, %s)",
                (count,),
            )
            return [int(row[0]) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def write_many(
        self,
        conn: Connection,
        account_pk: int,
        list_pk: int,
        inserted: Sequence[MemberRow],
        updated: Sequence[MemberRow],
        encoded: dict[int, str],
    ) -> None:
        """Updates, then inserts with their web ids, each one `executemany`; `encoded` holds
        each row's data as JSON text by web id. Any failure (a unique index, a row an API
        write changed meanwhile) propagates: the caller rolls back its savepoint."""
        _UPDATE_MEMBER.run_many_tuples(
            conn,
            _UPDATE_COLUMNS,
            [
                (m.subscriber_hash, m.email_address, m.status, encoded[m.web_id],
                 m.last_changed, m.web_id)
                for m in updated
            ],
        )  # fmt: skip
        _INSERT_MEMBER_WITH_ID.run(
            conn,
            [
                (m.web_id, account_pk, list_pk, m.subscriber_hash, m.email_address,
                 m.unique_email_id, m.contact_id, m.status, encoded[m.web_id], m.last_changed)
                for m in inserted
            ],
        )  # fmt: skip

    def tag_id(self, conn: Connection, list_pk: int, name: str) -> int:
        """The list's tag of that name, created when it has none."""
        found = self._find_tag(conn, list_pk, name)
        if found is None:
            # Two transactions may both miss a new tag: ON CONFLICT DO NOTHING makes the
            # second wait for the first and then take its row, instead of failing on the
            # unique index.
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            conn.execute(
                insert(tags)
                .values(list_pk=list_pk, name=name)
                .on_conflict_do_nothing(index_elements=["list_pk", "name"])
            )
            found = self._find_tag(conn, list_pk, name)
        assert found is not None
        return found

    def _find_tag(self, conn: Connection, list_pk: int, name: str) -> int | None:
        found = conn.execute(
            select(tags.c.id).where(and_(tags.c.list_pk == list_pk, tags.c.name == name))
        ).scalar()
        return None if found is None else int(found)

    def page(
        self,
        conn: Connection,
        list_pk: int,
        query: MemberQuery,
        count: int,
        offset: int,
    ) -> tuple[list[MemberRow], int]:
        """One page of a list's members that pass `query`, and how many pass it."""
        condition = and_(members.c.list_pk == list_pk, *_member_filters(query))
        total = conn.execute(
            select(func.count()).select_from(members).where(condition)
        ).scalar_one()
        order: list[Any] = []
        if query.sort_field is not None:
            key = (
                members.c.last_changed
                if query.sort_field == "last_changed"
                else members.c.data[query.sort_field].as_string()
            )
            order.append(key.desc() if query.descending else key)
        order.append(members.c.web_id.desc() if query.descending else members.c.web_id)
        rows = conn.execute(
            select(*_MEMBER_COLUMNS).where(condition).order_by(*order).limit(count).offset(offset)
        ).all()
        return [_member(row) for row in rows], int(total)

    def count_subscribed(self, conn: Connection, account_pk: int) -> int:
        return int(
            conn.execute(
                select(func.count())
                .select_from(members)
                .where(members.c.account_pk == account_pk, members.c.status == "subscribed")
            ).scalar_one()
        )
