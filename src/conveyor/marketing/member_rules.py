"""The rules that decide a member's fate, as pure functions over the rows storage loads.

The single HTTP request and the batch executor both come through here, so the two paths
cannot drift.
"""

from __future__ import annotations

from typing import Any

from conveyor.domain import problems
from conveyor.domain.audience import ListContext, MemberRow
from conveyor.domain.email import is_plausible_email
from conveyor.domain.problems import FieldError
from conveyor.marketing.member_values import normalize_timestamps
from conveyor.marketing.merge_values import REQUIRED_MESSAGE, InvalidMergeValue, merge_value
from conveyor.marketing.schemas import MemberFields

# Identity, status and tags are columns or handled apart; only these go into `data`.
_MEMBER_FIELD_ORDER = tuple(MemberFields.model_fields)
_MEMBER_FIELD_NAMES = frozenset(_MEMBER_FIELD_ORDER)
# What a member field's value may be for `_given_fields` to copy it instead of serializing
# it: a `Location` or a list of marketing permissions is a model to dump.
_PLAIN_FIELD_TYPES = frozenset({str, bool, dict})


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
    ctx: ListContext,
    data: dict[str, Any],
    fields: MemberFields,
    *,
    is_new: bool,
    skip_required: bool = False,
) -> dict[str, Any]:
    """Merge the given fields into `data`, checking merge fields against the list
    (`skip_required`: the request's `skip_merge_validation`)."""
    given = _given_fields(fields)
    if "merge_fields" in given:
        data["merge_fields"] = _merge_values(ctx, data["merge_fields"], given.pop("merge_fields"))
    if is_new and not skip_required:
        _require_merge_fields(ctx, data["merge_fields"])
    if "location" in given:
        data["location"] = {**data["location"], **given.pop("location")}
    if "interests" in given:
        data["interests"] = {**data["interests"], **given.pop("interests")}
    data.update(normalize_timestamps(given))
    return data


def _given_fields(fields: MemberFields) -> dict[str, Any]:
    """The member fields the body gave, not null, as plain values: what
    `model_dump(include=..., exclude_unset=True, exclude_none=True)` answers."""
    names = fields.model_fields_set & _MEMBER_FIELD_NAMES
    if not names:
        return {}
    given = {name: getattr(fields, name) for name in _MEMBER_FIELD_ORDER if name in names}
    if all(value is None or value.__class__ in _PLAIN_FIELD_TYPES for value in given.values()):
        # Most bodies give only such values: pydantic's serializer costs more than the copy.
        # `merge_fields` and `interests` are plain dicts of JSON values (no model inside),
        # which the serializer would only copy.
        return {
            name: dict(value) if value.__class__ is dict else value
            for name, value in given.items()
            if value is not None
        }
    return fields.model_dump(include=names, exclude_unset=True, exclude_none=True)


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
        try:
            merged[field.tag] = merge_value(field, value)
        except InvalidMergeValue as exc:
            errors.append(FieldError(field.tag, exc.message))
    if errors:
        raise problems.invalid_resource(errors, "Your merge fields were invalid.")
    return merged


def _require_merge_fields(ctx: ListContext, values: dict[str, Any]) -> None:
    missing = [
        FieldError(field.tag, REQUIRED_MESSAGE)
        for field in ctx.merge_fields
        if field.required and values.get(field.tag) in (None, "")
    ]
    if missing:
        raise problems.invalid_resource(missing, "Your merge fields were invalid.")


def revive(member: MemberRow, ctx: ListContext, status: str) -> None:
    """An archived member added again starts over with fresh fields."""
    member.data = new_member_data(ctx)
    member.status = status
