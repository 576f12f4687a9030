"""The query parameters of `GET /lists/{list_id}/members`, read into a `MemberQuery`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.domain import problems
from conveyor.domain.audience import MEMBER_STATUSES
from conveyor.domain.problems import FieldError
from conveyor.marketing.common import query_bool, query_choice, query_flag, query_time
from conveyor.storage.members import MemberQuery

SORT_FIELDS = ("timestamp_opt", "timestamp_signup", "last_changed")
_INTEREST_PARAMETERS = ("interest_category_id", "interest_ids", "interest_match")


def member_query(query: Mapping[str, Any]) -> MemberQuery:
    """Every filter the spec gives the member collection; 400 Invalid Resource naming the
    parameter for a value it cannot take or a filter given without the ones it needs."""
    status = query_choice(query, "status", MEMBER_STATUSES)
    since_changed = query_time(query, "since_last_changed")
    unsubscribed_since = query_time(query, "unsubscribed_since")
    if unsubscribed_since is not None:
        if status != "unsubscribed":
            raise _invalid("unsubscribed_since", "This filter needs status=unsubscribed.")
        # Conveyor keeps no separate unsubscribe time: an unsubscribed member's last change.
        since_changed = max(since_changed or "", unsubscribed_since)
    if query_bool(query, "since_last_campaign") is not None and status is None:
        raise _invalid("since_last_campaign", "This filter needs a status.")
    interest_ids, interest_match = _interests(query)
    return MemberQuery(
        status=status,
        email_type=query_choice(query, "email_type", ("html", "text")),
        unique_email_id=str(query["unique_email_id"]) if query.get("unique_email_id") else None,
        vip_only=query_flag(query, "vip_only"),
        since_last_changed=since_changed,
        before_last_changed=query_time(query, "before_last_changed"),
        since_timestamp_opt=query_time(query, "since_timestamp_opt"),
        before_timestamp_opt=query_time(query, "before_timestamp_opt"),
        interest_ids=interest_ids,
        interest_match=interest_match,
        sort_field=query_choice(query, "sort_field", SORT_FIELDS),
        descending=query_choice(query, "sort_dir", ("ASC", "DESC")) == "DESC",
    )


def _interests(query: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    given = [name for name in _INTEREST_PARAMETERS if query.get(name)]
    if not given:
        return (), "any"
    missing = [name for name in _INTEREST_PARAMETERS if name not in given]
    if missing:
        raise problems.invalid_resource(
            [
                FieldError(name, "interest_category_id, interest_ids and interest_match "
                           "go together.")
                for name in missing
            ]
        )  # fmt: skip
    match = query_choice(query, "interest_match", ("any", "all", "none")) or "any"
    ids = tuple(part.strip() for part in str(query["interest_ids"]).split(",") if part.strip())
    if not ids:
        raise _invalid("interest_ids", "Give at least one interest id.")
    return ids, match


def _invalid(name: str, message: str) -> problems.Problem:
    return problems.invalid_resource([FieldError(name, message)])
