"""The ingest's shortcut for the usual operation (batches/service.py): whatever it lets
through, the full storable-text and size checks would have let through too."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.batches.service import _check_storable, _plainly_storable
from conveyor.domain.operation_limits import OperationLimits, check_operation_size
from conveyor.domain.operations import Operation

# Short limits, so that text reaches them; NUL, non-ASCII and surrogates all drawn.
texts = st.text(st.characters(codec=None), max_size=12)
operations = st.builds(
    Operation,
    method=st.just("PUT"),
    path=texts,
    params=st.dictionaries(texts, texts, max_size=2),
    body=st.none() | texts,
    operation_id=st.none() | texts,
)
limits = st.builds(
    OperationLimits,
    body_bytes=st.integers(1, 16),
    operation_id_chars=st.integers(1, 12),
    path_chars=st.integers(1, 12),
)


@settings(max_examples=500)
@given(operations, limits)
def test_what_the_shortcut_passes_the_full_checks_pass(
    operation: Operation, limit: OperationLimits
) -> None:
    if _plainly_storable(operation, limit):
        _check_storable(operation, 7)
        check_operation_size(operation, 7, limit)


def test_the_usual_operation_takes_the_shortcut() -> None:
    usual = Operation("PUT", "/lists/1/members/abc", {}, '{"email_address": "a@b.c"}', "op-1")
    assert _plainly_storable(usual, OperationLimits(1 << 22, 1000, 8000))
    assert not _plainly_storable(usual, OperationLimits(10, 1000, 8000))  # body too long
    not_ascii = Operation("PUT", "/lists/1/members/abc", {}, '{"name": "é"}', "op-1")
    assert not _plainly_storable(not_ascii, OperationLimits(1 << 22, 1000, 8000))
