"""The shapes of audience data that storage hands to the member rules and back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A member erased by delete-permanent: hidden, never re-importable, only its hash is kept.
FORGOTTEN = "forgotten"
ARCHIVED = "archived"
MEMBER_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", ARCHIVED)


@dataclass(frozen=True, slots=True)
class MergeFieldDef:
    tag: str
    type: str
    required: bool
    default_value: str
    # The options a member's value is checked against (see `marketing.merge_values`).
    date_format: str = ""
    phone_format: str = ""
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ListContext:
    """A list as a member operation needs it: its key and its merge fields."""

    pk: int
    list_id: str
    merge_fields: tuple[MergeFieldDef, ...]


@dataclass(frozen=True, slots=True)
class ListRef:
    pk: int
    list_id: str


@dataclass(slots=True)
class MemberRow:
    web_id: int
    subscriber_hash: str
    email_address: str
    unique_email_id: str
    contact_id: str
    status: str
    # Everything a member has beyond identity and status: one JSON column, so that creating
    # a member is one INSERT (docs/architecture.md, "A hot path below SQLAlchemy").
    data: dict[str, Any]
    last_changed: str
