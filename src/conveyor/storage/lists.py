"""List (audience) SQL, and the list context that every member operation reads.

`context()` remembers a list and its merge fields for the rest of the caller's transaction
(a batch group runs hundreds of operations on one list) until something in it changes a
list's merge fields or deletes a list (`forget`).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, false, func, select
from sqlalchemy.engine import RootTransaction

from conveyor.domain.audience import FORGOTTEN, ListContext, ListRef, MergeFieldDef
from conveyor.domain.clock import Clock, now_iso
from conveyor.domain.ids import hex_id
from conveyor.storage.raw_sql import RawStatement, load_json
from conveyor.storage.tables import lists, members, merge_fields, tags

# One query for the list and its merge fields (LEFT JOIN: a list may have none).
LIST_CONTEXT = RawStatement(
    select(lists.c.pk, merge_fields.c.tag, merge_fields.c.data)
    .select_from(lists.outerjoin(merge_fields, merge_fields.c.list_pk == lists.c.pk))
    .where(
        and_(
            lists.c.list_id == bindparam("list_id"),
            lists.c.account_pk == bindparam("account_pk"),
        )
    )
    # Members show their merge fields in the list's order, as the real service does.
    .order_by(merge_fields.c.merge_id)
)


@dataclass(slots=True)
class _ContextCache:
    transaction: weakref.ref[RootTransaction]
    lists: dict[tuple[int, str], ListContext]
    off: bool = False


_CACHE_KEY = "conveyor.list_contexts"


@dataclass(frozen=True, slots=True)
class NewMergeField:
    tag: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ListQuery:
    """Which of an account's lists a page shows, and in which order. Times are in the
    form the API answers with (`domain.timestamps.answer_form`), so they compare as text."""

    since_date_created: str | None = None
    before_date_created: str | None = None
    # Lists holding a member (not erased) with this subscriber hash.
    member_hash: str | None = None
    # A filter no list here can pass: no list has sent a campaign or has an ecommerce store.
    nothing: bool = False
    descending: bool = False


@dataclass(frozen=True, slots=True)
class MemberStats:
    """What a list's `stats` say of its members."""

    counts: dict[str, int]
    last_sub_date: str = ""
    last_unsub_date: str = ""


class ListStore:
    """Lists of an account, with time from `clock`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        # The statement is an attribute so a test can count how often lists are read.
        self.context_statement = LIST_CONTEXT

    # --- the list context of member operations ------------------------------------------

    def context(self, conn: Connection, account_pk: int, list_id: str) -> ListContext | None:
        """The account's list with its merge fields, remembered within the transaction."""
        cache = self._cache(conn)
        if cache is None or cache.off:
            return self._read_context(conn, account_pk, list_id)
        key = (account_pk, list_id)
        ctx = cache.lists.get(key)
        if ctx is None:
            ctx = self._read_context(conn, account_pk, list_id)
            if ctx is not None:
                cache.lists[key] = ctx
        return ctx

    def forget(self, conn: Connection) -> None:
        """A list's merge fields changed, or a list went: stop remembering lists in this
        transaction. For good, not just until the next read: a savepoint rolled back later
        could otherwise leave remembered a state that the database no longer has."""
        cache = self._cache(conn)
        if cache is not None:
            cache.off = True
            cache.lists.clear()

    def _cache(self, conn: Connection) -> _ContextCache | None:
        """The cache of the connection's current transaction; None outside one.

        Kept in the DBAPI connection's `info` and tied to the transaction by a weak
        reference, so the next transaction on the same pooled connection starts empty.
        """
        transaction = conn.get_transaction()
        if transaction is None:
            return None
        cache = conn.info.get(_CACHE_KEY)
        if cache is None or cache.transaction() is not transaction:
            cache = _ContextCache(weakref.ref(transaction), {})
            conn.info[_CACHE_KEY] = cache
        return cache

    def _read_context(self, conn: Connection, account_pk: int, list_id: str) -> ListContext | None:
        rows = self.context_statement.all(conn, {"list_id": list_id, "account_pk": account_pk})
        if not rows:
            return None
        fields = tuple((tag, raw) for _pk, tag, raw in rows if tag is not None)
        if all(isinstance(raw, str) for _tag, raw in fields):
            defs = _parsed_merge_fields(fields)
        else:
            defs = _merge_field_defs(fields)
        return ListContext(int(rows[0][0]), list_id, defs)

    # --- lists -------------------------------------------------------------------------

    def find(self, conn: Connection, account_pk: int, list_id: str) -> ListRef | None:
        """The account's list; another account's list is indistinguishable from none."""
        row = conn.execute(
            select(lists.c.pk).where(
                and_(lists.c.list_id == list_id, lists.c.account_pk == account_pk)
            )
        ).first()
        return None if row is None else ListRef(row.pk, list_id)

    def create(
        self,
        conn: Connection,
        account_pk: int,
        name: str,
        data: dict[str, Any],
        default_fields: Sequence[NewMergeField],
    ) -> str:
        list_id = hex_id(10)
        pk = conn.execute(
            lists.insert()
            .values(
                account_pk=account_pk,
                list_id=list_id,
                name=name,
                data=data,
                date_created=now_iso(self.clock),
                next_merge_id=len(default_fields) + 1,
            )
            .returning(lists.c.pk)
        ).scalar_one()
        if default_fields:
            conn.execute(
                merge_fields.insert(),
                [
                    {"list_pk": pk, "merge_id": merge_id, "tag": field.tag, "data": field.data}
                    for merge_id, field in enumerate(default_fields, start=1)
                ],
            )
        return list_id

    def row(self, conn: Connection, account_pk: int, list_id: str) -> Any | None:
        return conn.execute(
            select(lists).where(and_(lists.c.list_id == list_id, lists.c.account_pk == account_pk))
        ).first()

    def page(
        self,
        conn: Connection,
        account_pk: int,
        count: int,
        offset: int,
        query: ListQuery | None = None,
    ) -> tuple[list[Any], int]:
        query = query or ListQuery()
        scope = lists.c.account_pk == account_pk
        if query.nothing:
            scope = and_(scope, false())
        if query.since_date_created is not None:
            scope = and_(scope, lists.c.date_created >= query.since_date_created)
        if query.before_date_created is not None:
            scope = and_(scope, lists.c.date_created < query.before_date_created)
        if query.member_hash is not None:
            holding = select(members.c.list_pk).where(
                and_(
                    members.c.account_pk == account_pk,
                    members.c.subscriber_hash == query.member_hash,
                    members.c.status != FORGOTTEN,
                )
            )
            scope = and_(scope, lists.c.pk.in_(holding))
        total = conn.execute(select(func.count()).select_from(lists).where(scope)).scalar_one()
        # Creation order: `pk` grows with `date_created` and breaks ties in it.
        order = lists.c.pk.desc() if query.descending else lists.c.pk
        rows = conn.execute(
            select(lists).where(scope).order_by(order).limit(count).offset(offset)
        ).all()
        return list(rows), int(total)

    def data(self, conn: Connection, list_pk: int) -> dict[str, Any]:
        return dict(conn.execute(select(lists.c.data).where(lists.c.pk == list_pk)).scalar_one())

    def update(self, conn: Connection, list_pk: int, values: dict[str, Any]) -> None:
        conn.execute(lists.update().where(lists.c.pk == list_pk).values(**values))

    def delete(self, conn: Connection, list_pk: int) -> None:
        self.forget(conn)
        # Children first: foreign-key cascades are not enabled on every SQLite connection.
        conn.execute(members.delete().where(members.c.list_pk == list_pk))
        conn.execute(merge_fields.delete().where(merge_fields.c.list_pk == list_pk))
        conn.execute(tags.delete().where(tags.c.list_pk == list_pk))
        conn.execute(lists.delete().where(lists.c.pk == list_pk))

    def member_stats(self, conn: Connection, list_pks: list[int]) -> dict[int, MemberStats]:
        """Members per status of each list (forgotten ones included: the caller decides),
        when someone last subscribed (the newest opt-in of a subscribed member) and when
        someone last unsubscribed (the newest change of an unsubscribed member)."""
        if not list_pks:
            return {}
        rows = conn.execute(
            select(
                members.c.list_pk,
                members.c.status,
                func.count(),
                func.max(members.c.last_changed),
            )
            .where(members.c.list_pk.in_(list_pks))
            .group_by(members.c.list_pk, members.c.status)
        ).all()
        counts: dict[int, dict[str, int]] = {}
        unsubscribed: dict[int, str] = {}
        for list_pk, status, n, last_changed in rows:
            counts.setdefault(list_pk, {})[status] = int(n)
            if status == "unsubscribed":
                unsubscribed[list_pk] = last_changed or ""
        opted_in = members.c.data["timestamp_opt"].as_string()
        subscribed = dict(
            conn.execute(
                select(members.c.list_pk, func.max(opted_in))
                .where(and_(members.c.list_pk.in_(list_pks), members.c.status == "subscribed"))
                .group_by(members.c.list_pk)
            ).all()
        )
        return {
            list_pk: MemberStats(
                by_status, subscribed.get(list_pk) or "", unsubscribed.get(list_pk, "")
            )
            for list_pk, by_status in counts.items()
        }


@functools.lru_cache(maxsize=1024)
def _parsed_merge_fields(fields: tuple[tuple[str, str], ...]) -> tuple[MergeFieldDef, ...]:
    # SQLite hands JSON back as text, and the same text parses to the same definitions: a
    # list's merge fields are decoded once, not once for every member written.
    return _merge_field_defs(fields)


def _merge_field_defs(fields: tuple[tuple[str, Any], ...]) -> tuple[MergeFieldDef, ...]:
    defs: list[MergeFieldDef] = []
    for tag, raw in fields:
        data = load_json(raw)
        options = data.get("options") or {}
        defs.append(
            MergeFieldDef(
                tag,
                data["type"],
                bool(data["required"]),
                data["default_value"],
                date_format=str(options.get("date_format") or ""),
                phone_format=str(options.get("phone_format") or ""),
                choices=tuple(str(choice) for choice in options.get("choices") or ()),
            )
        )
    return tuple(defs)
