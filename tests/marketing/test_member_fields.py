"""The member fields a body gave, copied where pydantic's serializer would only copy them."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from conveyor.marketing.member_rules import _MEMBER_FIELD_NAMES, _given_fields
from conveyor.marketing.schemas import BatchMember, MemberCreate, MemberPatch, MemberUpsert

_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_json = st.recursive(
    _scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
_location = st.fixed_dictionaries(
    {}, optional={"latitude": st.floats(-90, 90), "longitude": st.floats(-180, 180)}
)
_permission = st.fixed_dictionaries(
    {"marketing_permission_id": st.just("p1"), "enabled": st.booleans()}
)
_body = st.fixed_dictionaries(
    {},
    optional={
        "email_address": st.just("a@example.org"),
        "status": st.just("subscribed"),
        "email_type": st.sampled_from(["html", "text", None]),
        "merge_fields": st.none() | st.dictionaries(st.sampled_from(["FNAME", "ADDR", "n"]), _json),
        "interests": st.none() | st.dictionaries(st.text(max_size=4), st.booleans()),
        "language": st.none() | st.text(max_size=3),
        "vip": st.none() | st.booleans(),
        "location": st.none() | _location,
        "marketing_permissions": st.none() | st.lists(_permission, max_size=2),
        "ip_signup": st.none() | st.just("10.0.0.1"),
        "timestamp_opt": st.none() | st.just("2026-11-29 10:00:00"),
    },
)  # fmt: skip


@given(body=_body, model=st.sampled_from([MemberCreate, MemberUpsert, MemberPatch, BatchMember]))
def test_given_fields_are_what_the_serializer_answers(body: dict[str, Any], model: Any) -> None:
    try:
        fields = model.model_validate(body)
    except ValidationError:
        return  # refused before any field is read
    names = fields.model_fields_set & _MEMBER_FIELD_NAMES
    expected = (
        fields.model_dump(include=names, exclude_unset=True, exclude_none=True) if names else {}
    )
    assert _given_fields(fields) == expected
    assert list(_given_fields(fields)) == list(expected)  # in the same order, too
