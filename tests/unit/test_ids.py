"""Member ids: Mailchimp's shapes, and a contact_id that sorts by creation time."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from conveyor.domain.ids import member_ids

HEX = re.compile(r"[0-9a-f]+")
# Microseconds from 1970 to 2112, the range 13 hex digits hold.
NANOS = st.integers(min_value=0, max_value=(16**13 - 1) * 1000)


@given(NANOS)
def test_shapes(now_ns: int) -> None:
    unique_email_id, contact_id = member_ids(now_ns)
    assert len(unique_email_id) == 10 and HEX.fullmatch(unique_email_id)
    assert len(contact_id) == 32 and HEX.fullmatch(contact_id)


@given(NANOS, NANOS)
def test_contact_ids_sort_by_creation_microsecond(first: int, second: int) -> None:
    # A later member's contact_id sorts after an earlier one's, so the contact index is
    # appended to instead of written at random pages.
    a, b = member_ids(first)[1], member_ids(second)[1]
    if first // 1000 < second // 1000:
        assert a < b
    elif first // 1000 > second // 1000:
        assert a > b


def test_ids_drawn_in_one_microsecond_differ() -> None:
    drawn = {member_ids(1_790_000_000_000_000_000) for _ in range(1000)}
    assert len({contact for _, contact in drawn}) == 1000
    assert len({unique for unique, _ in drawn}) == 1000
