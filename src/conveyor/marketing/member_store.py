"""Member rows: the reads and writes that the member, tag and batch-subscribe handlers share.

Everything a member has beyond its identity and status lives in one JSON column, so that
creating a member is one INSERT: the batch hot path (ARCHITECTURE.md, decision 3).
"""

from __future__ import annotations

import functools
import sqlite3
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RootTransaction

from conveyor.domain import problems
from conveyor.domain.email import is_plausible_email
from conveyor.domain.ids import hex_id, now_iso, subscriber_hash
from conveyor.domain.problems import FieldError
from conveyor.marketing.schemas import MemberFields
from conveyor.storage.fast import RawStatement, dump_json, load_json
from conveyor.storage.tables import lists, members, merge_fields, tags

FORGOTTEN = "forgotten"


@dataclass(frozen=True, slots=True)
class MergeFieldDef:
    tag: str
    type: str
    required: bool
    default_value: str


@dataclass(frozen=True, slots=True)
class ListContext:
    pk: int
    list_id: str
    merge_fields: tuple[MergeFieldDef, ...]


@dataclass(slots=True)
class MemberRow:
    web_id: int
    subscriber_hash: str
    email_address: str
    unique_email_id: str
    contact_id: str
    status: str
    data: dict[str, Any]
    last_changed: str


# One query for the list and its merge fields (LEFT JOIN: a list may have none).
_LIST_CONTEXT = RawStatement(
    select(lists.c.pk, merge_fields.c.tag, merge_fields.c.data)
    .select_from(lists.outerjoin(merge_fields, merge_fields.c.list_pk == lists.c.pk))
    .where(
        and_(
            lists.c.list_id == bindparam("list_id"),
            lists.c.account_pk == bindparam("account_pk"),
        )
    )
)

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
# Looked up apart: `hash = ? OR contact_id = ?` made SQLite scan the whole list.
_MEMBER_BY_CONTACT = RawStatement(
    select(*_MEMBER_COLUMNS).where(
        and_(
            members.c.list_pk == bindparam("list_pk"),
            members.c.contact_id == bindparam("h"),
        )
    )
)
_INSERT_MEMBER = RawStatement(
    members.insert()
    .values(
        {
            name: bindparam(name)
            for name in (
                "account_pk", "list_pk", "subscriber_hash", "email_address", "unique_email_id",
                "contact_id", "status", "data", "last_changed",
            )
        }
    )
    .returning(members.c.web_id)
)  # fmt: skip
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
# Identity, status and tags are columns or handled apart; only these go into `data`.
_MEMBER_FIELD_NAMES = set(MemberFields.model_fields)


def load_list(conn: Connection, account_pk: int, list_id: str) -> ListContext:
    """The caller's list and its merge fields, or 404.

    Remembered for the rest of the caller's transaction (a batch group runs hundreds of
    operations on one list), until something in it changes a list's merge fields or deletes
    a list (`forget_lists`); from then on, to the end of the transaction, read every time.
    """
    cache = _list_cache(conn)
    if cache is None or cache.off:
        return _read_list(conn, account_pk, list_id)
    key = (account_pk, list_id)
    ctx = cache.lists.get(key)
    if ctx is None:
        ctx = cache.lists[key] = _read_list(conn, account_pk, list_id)
    return ctx


def forget_lists(conn: Connection) -> None:
    """A list's merge fields changed, or a list went: stop remembering lists in this
    transaction. For good, not just until the next read: a savepoint rolled back later could
    otherwise leave remembered a state that the database no longer has."""
    cache = _list_cache(conn)
    if cache is not None:
        cache.off = True
        cache.lists.clear()


@dataclass(slots=True)
class _ListCache:
    transaction: weakref.ref[RootTransaction]
    lists: dict[tuple[int, str], ListContext]
    off: bool = False


_LIST_CACHE = "conveyor.list_contexts"


def _list_cache(conn: Connection) -> _ListCache | None:
    """The cache of the connection's current transaction; None outside one.

    Kept in the DBAPI connection's `info` and tied to the transaction by a weak reference, so
    the next transaction on the same pooled connection starts with an empty one.
    """
    transaction = conn.get_transaction()
    if transaction is None:
        return None
    cache = conn.info.get(_LIST_CACHE)
    if cache is None or cache.transaction() is not transaction:
        cache = _ListCache(weakref.ref(transaction), {})
        conn.info[_LIST_CACHE] = cache
    return cache


def _read_list(conn: Connection, account_pk: int, list_id: str) -> ListContext:
    rows = _LIST_CONTEXT.all(conn, {"list_id": list_id, "account_pk": account_pk})
    if not rows:
        raise problems.not_found()
    fields = tuple((tag, raw) for _pk, tag, raw in rows if tag is not None)
    if all(isinstance(raw, str) for _tag, raw in fields):
        defs = _parsed_merge_fields(fields)
    else:
        defs = _merge_field_defs(fields)
    return ListContext(int(rows[0][0]), list_id, defs)


@functools.lru_cache(maxsize=1024)
def _parsed_merge_fields(fields: tuple[tuple[str, str], ...]) -> tuple[MergeFieldDef, ...]:
    # SQLite hands JSON back as text, and the same text parses to the same definitions: a
    # list's merge fields are decoded once, not once for every member written.
    return _merge_field_defs(fields)


def _merge_field_defs(fields: tuple[tuple[str, Any], ...]) -> tuple[MergeFieldDef, ...]:
    defs: list[MergeFieldDef] = []
    for tag, raw in fields:
        data = load_json(raw)
        defs.append(MergeFieldDef(tag, data["type"], bool(data["required"]), data["default_value"]))
    return tuple(defs)


def member_key(raw: str) -> str:
    """The path's member reference: a subscriber hash, an email address or a contact id."""
    return subscriber_hash(raw) if "@" in raw else raw.lower()


def find_member(
    conn: Connection, list_pk: int, raw_key: str, *, may_be_contact: bool = True
) -> MemberRow | None:
    params = {"list_pk": list_pk, "h": member_key(raw_key)}
    row = _MEMBER_BY_HASH.first(conn, params)
    if row is None and may_be_contact and "@" not in raw_key:
        row = _MEMBER_BY_CONTACT.first(conn, params)
    if row is None:
        return None
    web_id, hash_, email, unique_id, contact_id, status, data, last_changed = row
    return MemberRow(
        int(web_id), hash_, email, unique_id, contact_id, status, load_json(data), last_changed
    )


def get_visible_member(conn: Connection, list_pk: int, raw_key: str) -> MemberRow:
    member = find_member(conn, list_pk, raw_key)
    if member is None or member.status == FORGOTTEN:
        raise problems.not_found()
    return member


def check_email(email: str) -> str:
    email = email.strip()
    if not is_plausible_email(email):
        raise problems.fake_email(email)
    return email


def new_member_data(ctx: ListContext) -> dict[str, Any]:
    return {
        "email_type": "html",
        "merge_fields": {field.tag: field.default_value for field in ctx.merge_fields},
        "interests": {},
        "language": "",
        "vip": False,
        "location": {
            "latitude": 0,
            "longitude": 0,
            "gmtoff": 0,
            "dstoff": 0,
            "country_code": "",
            "timezone": "",
            "region": "",
        },
        "marketing_permissions": [],
        "ip_signup": "",
        "timestamp_signup": "",
        "ip_opt": "",
        "timestamp_opt": "",
        "source": "API - Generic",
        "tags": [],
        "member_rating": 2,
        "unsubscribe_reason": "",
    }


def apply_fields(
    ctx: ListContext, data: dict[str, Any], fields: MemberFields, *, is_new: bool
) -> dict[str, Any]:
    """Merge the given fields into `data`, checking merge fields against the list."""
    given = fields.model_dump(include=_MEMBER_FIELD_NAMES, exclude_unset=True, exclude_none=True)
    if "merge_fields" in given:
        data["merge_fields"] = _merge_values(ctx, data["merge_fields"], given.pop("merge_fields"))
    if is_new:
        _require_merge_fields(ctx, data["merge_fields"])
    if "location" in given:
        data["location"] = {**data["location"], **given.pop("location")}
    if "interests" in given:
        data["interests"] = {**data["interests"], **given.pop("interests")}
    data.update(given)
    return data


def _merge_values(
    ctx: ListContext, current: dict[str, Any], given: dict[str, Any]
) -> dict[str, Any]:
    known = {field.tag: field for field in ctx.merge_fields}
    merged = dict(current)
    errors: list[FieldError] = []
    for tag, value in given.items():
        field = known.get(tag.upper())
        if field is None:
            continue  # the real service ignores merge tags the list does not have
        if field.type == "address":
            value = _address(value)
            if value is None:
                errors.append(FieldError(field.tag, "Please enter a complete address"))
                continue
        elif field.type == "number":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                errors.append(FieldError(field.tag, "Please enter a number"))
                continue
            if isinstance(value, str) and value.strip():
                try:
                    float(value)
                except ValueError:
                    errors.append(FieldError(field.tag, "Please enter a number"))
                    continue
        elif not isinstance(value, str | int | float) or isinstance(value, bool):
            errors.append(FieldError(field.tag, "Please enter a value"))
            continue
        merged[field.tag] = value
    if errors:
        raise problems.invalid_resource(errors, "Your merge fields were invalid.")
    return merged


_ADDRESS_PARTS = ("addr1", "addr2", "city", "state", "zip", "country")
_ADDRESS_REQUIRED = ("addr1", "city", "state", "zip")


def _address(value: Any) -> Any:
    """An address merge value as stored, or None when it is not one.

    A string is kept as given; an object must give addr1, city, state and zip as text (a
    number is taken as text) and keeps only the six address parts, so nothing arbitrary
    (or arbitrarily deep) is stored.
    """
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return None
    address: dict[str, str] = {}
    for part in _ADDRESS_PARTS:
        item = value.get(part, "")
        if isinstance(item, int | float) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str):
            return None
        address[part] = item
    if any(not address[part].strip() for part in _ADDRESS_REQUIRED):
        return None
    return address


def _require_merge_fields(ctx: ListContext, values: dict[str, Any]) -> None:
    missing = [
        FieldError(field.tag, "Please enter a value")
        for field in ctx.merge_fields
        if field.required and values.get(field.tag) in (None, "")
    ]
    if missing:
        raise problems.invalid_resource(missing, "Your merge fields were invalid.")


def insert_member(
    conn: Connection,
    account_pk: int,
    ctx: ListContext,
    email: str,
    status: str,
    data: dict[str, Any],
) -> MemberRow:
    now = now_iso()
    if status == "subscribed" and not data["timestamp_opt"]:
        data["timestamp_opt"] = now
    row = MemberRow(
        web_id=0,
        subscriber_hash=subscriber_hash(email),
        email_address=email,
        unique_email_id=hex_id(10),
        contact_id=hex_id(32),
        status=status,
        data=data,
        last_changed=now,
    )
    try:
        inserted = _INSERT_MEMBER.first(
            conn,
            {
                "account_pk": account_pk,
                "list_pk": ctx.pk,
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
        # unique index lets one insert it, and the other is answered as if it had looked later.
        if is_unique_violation(exc):
            raise problems.member_exists(email) from None
        raise
    assert inserted is not None
    row.web_id = int(inserted[0])
    return row


def save_member(conn: Connection, member: MemberRow) -> None:
    member.last_changed = now_iso()
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


def revive(member: MemberRow, ctx: ListContext, status: str) -> None:
    """An archived member added again starts over with fresh fields."""
    member.data = new_member_data(ctx)
    member.status = status


def apply_tag_changes(
    conn: Connection, list_pk: int, member: MemberRow, changes: list[tuple[str, bool]]
) -> None:
    """Activate or deactivate tags by name; unknown active tags are created for the list."""
    current = {tag["name"]: tag for tag in member.data.get("tags", [])}
    for name, active in changes:
        if not active:
            current.pop(name, None)
            continue
        if name in current:
            continue
        tag_id = _tag_id(conn, list_pk, name)
        current[name] = {"id": tag_id, "name": name, "date_added": now_iso()}
    member.data["tags"] = list(current.values())


def _tag_id(conn: Connection, list_pk: int, name: str) -> int:
    found = _find_tag(conn, list_pk, name)
    if found is None:
        # Two transactions may both miss a new tag: ON CONFLICT DO NOTHING makes the second
        # wait for the first and then take its row, instead of failing on the unique index.
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(
            insert(tags)
            .values(list_pk=list_pk, name=name)
            .on_conflict_do_nothing(index_elements=["list_pk", "name"])
        )
        found = _find_tag(conn, list_pk, name)
    assert found is not None
    return found


def _find_tag(conn: Connection, list_pk: int, name: str) -> int | None:
    found = conn.execute(
        select(tags.c.id).where(and_(tags.c.list_pk == list_pk, tags.c.name == name))
    ).scalar()
    return None if found is None else int(found)


def is_unique_violation(exc: BaseException) -> bool:
    """A unique index refused a row: psycopg's SQLSTATE 23505 or sqlite3's message, raw or
    wrapped by SQLAlchemy."""
    error = getattr(exc, "orig", None) or exc
    if getattr(error, "sqlstate", None) == "23505":
        return True
    return isinstance(error, sqlite3.IntegrityError) and "UNIQUE constraint" in str(error)
