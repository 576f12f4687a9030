"""Result rows store member answers without their links and give them back byte for byte."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from conveyor.domain.links import member_links
from conveyor.domain.stored_response import compact, expand

hashes = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
# Roots and list ids as they come (a Host header is the client's), odd characters included.
roots = st.one_of(
    st.just("http://127.0.0.1:8000/3.0"),
    st.builds(lambda host: f"https://{host}/3.0", st.text(min_size=1, max_size=30)),
    st.text(max_size=40),
)
list_ids = st.one_of(st.text(alphabet="0123456789abcdef", min_size=10, max_size=10), st.text())
fields = st.dictionaries(
    st.text(max_size=12).filter(lambda key: key not in {"id", "list_id", "_links"}),
    st.one_of(st.text(), st.integers(-(2**53), 2**53), st.booleans(), st.none()),
    max_size=6,
)


def member_answer(root: str, list_id: str, hash_: str, more: dict[str, object]) -> str:
    answer = {"id": hash_, **more, "list_id": list_id, "_links": member_links(root, list_id, hash_)}
    return orjson.dumps(answer).decode()


@given(roots, list_ids, hashes, fields)
def test_a_member_answer_is_stored_short_and_read_back_whole(
    root: str, list_id: str, hash_: str, more: dict[str, object]
) -> None:
    answer = member_answer(root, list_id, hash_, more)
    stored = compact(answer)
    assert expand(stored) == answer
    if _plain(root) and _plain(list_id) and "\x01" not in root and "/lists/" not in root:
        assert len(stored) < len(answer) - 1_000  # the links stay out


def _plain(text: str) -> bool:
    """Written in JSON as it is: real roots and list ids (others are stored whole)."""
    return orjson.dumps(text).decode()[1:-1] == text


@given(st.one_of(st.text(), st.text().map(lambda text: "\x01" + text)))
def test_any_text_comes_back_as_it_went_in(text: str) -> None:
    stored = compact(text)
    assert expand(stored) == text
    if not text.startswith(("\x01", "\x02", '{"id":"')):
        assert stored == text


@given(roots, list_ids, hashes, fields, st.sampled_from(["self", "other"]))
def test_links_that_are_not_the_members_own_stay_in_the_row(
    root: str, list_id: str, hash_: str, more: dict[str, object], rel: str
) -> None:
    links = member_links(root, list_id, hash_)
    links[-1] = {**links[-1], "rel": rel}  # one link differs from what the member's would be
    answer = orjson.dumps({"id": hash_, **more, "list_id": list_id, "_links": links}).decode()
    assert compact(answer) == answer


def test_an_error_document_is_stored_as_it_is() -> None:
    problem = orjson.dumps(
        {"type": "https://mailchimp.com/developer/", "title": "Member Exists", "status": 400}
    ).decode()
    assert compact(problem) == problem
    assert compact("") == ""
