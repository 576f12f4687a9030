"""The cap on one batch result's size."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from conveyor.domain.result_cap import TITLE, capped_response


@given(st.text(max_size=300), st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]))
def test_a_result_within_the_cap_is_untouched(text: str, method: str) -> None:
    response = orjson.dumps({"value": text}).decode()
    limit = len(response.encode())
    assert capped_response(method, 200, response, max_bytes=limit, new_instance=lambda: "i") == (
        200,
        response,
    )


def test_a_get_over_the_cap_fails_and_says_how_to_ask_for_less() -> None:
    response = orjson.dumps({"members": ["é" * 100]}).decode()  # 216 bytes, 116 characters
    status, body = capped_response(
        "GET", 200, response, max_bytes=200, new_instance=lambda: "req-1"
    )
    problem = orjson.loads(body)
    assert status == 400 == problem["status"]
    assert problem["title"] == TITLE and problem["instance"] == "req-1"
    assert "216 bytes" in problem["detail"] and "`count`" in problem["detail"]
    assert len(body) < 1_000


def test_a_write_over_the_cap_keeps_its_status_the_effect_happened() -> None:
    response = orjson.dumps({"merge_fields": {"NOTES": "x" * 5_000}}).decode()
    status, body = capped_response(
        "PUT", 200, response, max_bytes=1_000, new_instance=lambda: "req-2"
    )
    problem = orjson.loads(body)
    assert status == 200 == problem["status"]
    assert "was applied" in problem["detail"]
