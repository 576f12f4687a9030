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
from conveyor.marketing.schemas import MemberFields

# Identity, status and tags are columns or handled apart; only these go into `data`.
_MEMBER_FIELD_NAMES = set(MemberFields.model_fields)


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


def revive(member: MemberRow, ctx: ListContext, status: str) -> None:
    """An archived member added again starts over with fresh fields."""
    member.data = new_member_data(ctx)
    member.status = status
