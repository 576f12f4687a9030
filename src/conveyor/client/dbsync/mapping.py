"""Source rows into member upserts: which column is the address, the status, the tags, and
which columns are merge fields. Pure: no database, no HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.client.operations import Operation, tag_member, upsert_member

# Merge tags are upper case, at most ten characters: FNAME, LNAME, PHONE, MMERGE7.
MERGE_TAG = re.compile(r"[A-Z][A-Z0-9_]{0,9}")
MEMBER_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
NO_EMAIL = "no email address in this row; nothing was sent"


class MappingError(ValueError):
    """The query's columns cannot be mapped as asked (no email column, a bad --map, …)."""


def parse_map_option(items: Iterable[str]) -> dict[str, str]:
    """``["first_name=FNAME", …]`` into ``{"first_name": "FNAME"}``."""
    mapped: dict[str, str] = {}
    for item in items:
        column, sep, tag = item.partition("=")
        column, tag = column.strip(), tag.strip()
        if not sep or not column or not tag:
            raise MappingError(f"--map wants COLUMN=MERGE_TAG, got {item!r}")
        if not MERGE_TAG.fullmatch(tag):
            raise MappingError(
                f"{tag!r} is not a merge tag (upper case, at most 10 characters, like FNAME)"
            )
        mapped[column] = tag
    return mapped


@dataclass(frozen=True, slots=True)
class MemberMapping:
    """Where each part of a member comes from, resolved against the query's columns."""

    columns: tuple[str, ...]
    email: int
    status: int | None
    tags: int | None
    merge_fields: tuple[tuple[int, str], ...]

    @classmethod
    def resolve(
        cls,
        columns: Sequence[str],
        *,
        email_column: str = "email",
        status_column: str = "status",
        tags_column: str = "tags",
        merge_map: Mapping[str, str] | None = None,
        reserved: Iterable[str] = (),
    ) -> MemberMapping:
        """Find the columns by name. Upper-case columns (FNAME) are merge fields of that tag;
        ``merge_map`` names others (``first_name`` → FNAME). ``reserved`` columns (the key,
        the since-column) are never merge fields."""
        index = {name: position for position, name in enumerate(columns)}
        if email_column not in index:
            raise MappingError(
                f"the query returns no {email_column!r} column (name it with --email-column); "
                f"its columns are: {', '.join(columns) or 'none'}"
            )
        explicit = dict(merge_map or {})
        missing = [column for column in explicit if column not in index]
        if missing:
            raise MappingError(f"--map names columns the query does not return: {missing}")
        skip = {email_column, status_column, tags_column, *reserved}
        merge: dict[str, int] = {}
        for name, position in index.items():
            if name in explicit:
                merge[explicit[name]] = position
            elif name not in skip and MERGE_TAG.fullmatch(name):
                merge.setdefault(name, position)
        return cls(
            columns=tuple(columns),
            email=index[email_column],
            status=index.get(status_column),
            tags=index.get(tags_column),
            merge_fields=tuple((position, tag) for tag, position in merge.items()),
        )

    def email_of(self, row: Sequence[Any]) -> str:
        value = row[self.email]
        return "" if value is None else str(value).strip()

    def tags_of(self, row: Sequence[Any]) -> list[str]:
        """A ``tags`` cell as tag names: ``"vip, newsletter"`` or an array column."""
        if self.tags is None:
            return []
        value = row[self.tags]
        if value is None:
            return []
        names = value if isinstance(value, list | tuple) else str(value).split(",")
        return [text for name in names if (text := str(name).strip())]

    def upsert(
        self, list_id: str, row: Sequence[Any], operation_id: str, *, status_if_new: str
    ) -> Operation:
        """``PUT …/members/{hash}``; a status cell applies to new addresses only, like
        ``--status``, so members who unsubscribed stay unsubscribed."""
        status = status_if_new
        if self.status is not None and (cell := row[self.status]) is not None:
            text = str(cell).strip().lower()
            if text:
                status = text
        merge_fields = {
            tag: _merge_value(value)
            for position, tag in self.merge_fields
            # An empty cell is "no data here", not "erase what the member has".
            if (value := row[position]) is not None and str(value).strip() != ""
        }
        return upsert_member(
            list_id,
            self.email_of(row),
            status_if_new=status,
            merge_fields=merge_fields or None,
            operation_id=operation_id,
        )

    def tag(self, list_id: str, row: Sequence[Any], operation_id: str) -> Operation | None:
        names = self.tags_of(row)
        if not names:
            return None
        return tag_member(list_id, self.email_of(row), add=names, operation_id=operation_id)


def _merge_value(value: Any) -> Any:
    # Numbers stay numbers (a "number" merge field); anything else is sent as its text.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value).strip()
    return value
