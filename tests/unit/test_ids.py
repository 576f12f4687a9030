"""Member ids: Mailchimp's shapes, and a contact_id that sorts by creation time."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from conveyor.domain.ids import member_ids

HEX = re.compile(r"[0-9a-f]+")
# Seconds from 1970 to 2112, the range 13 hex digits of microseconds hold.
CREATED = st.floats(min_value=0, max_value=(16**13 - 1) / 1e6, allow_nan=False)


@given(st.floats(min_value=0, max_value=1e10, allow_nan=False))
def test_shapes(created: float) -> None:
    unique_email_id, contact_id = member_ids(created)
    assert len(unique_email_id) == 10 and HEX.fullmatch(unique_email_id)
    assert len(contact_id) == 32 and HEX.fullmatch(contact_id)


@given(CREATED, CREATED)
def test_contact_ids_sort_by_creation_microsecond(first: float, second: float) -> None:
    # A later member's contact_id sorts after an earlier one's, so the contact index is
    # appended to instead of written at random pages.
    a, b = member_ids(first)[1], member_ids(second)[1]
    first_micros, second_micros = int(first * 1e6), int(second * 1e6)
    if first_micros < second_micros:
        assert a < b
    elif first_micros > second_micros:
        assert a > b


def test_ids_drawn_in_one_microsecond_differ() -> None:
    drawn = {member_ids(1_790_000_000.0) for _ in range(1000)}
    assert len({contact for _, contact in drawn}) == 1000
    assert len({unique for unique, _ in drawn}) == 1000
