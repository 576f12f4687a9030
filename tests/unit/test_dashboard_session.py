"""The dashboard's session cookie: what signs in, what is refused, and the CSRF check."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from conveyor.http.dashboard.session import SALT, Session, SessionCodec, new_session

CODEC = SessionCodec(b"a-secret", max_age_seconds=3600)
hashes = st.one_of(st.none(), st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))


@given(hashes)
def test_a_session_comes_back_as_it_went(key_hash: str | None) -> None:
    session = new_session(key_hash)
    assert CODEC.loads(CODEC.dumps(session)) == session
    assert session.signed_in is (key_hash is not None)


@given(st.text(max_size=200))
def test_anything_else_is_no_session(cookie: str) -> None:
    assert CODEC.loads(cookie) is None


def test_another_secret_or_salt_or_an_edit_is_no_session() -> None:
    cookie = CODEC.dumps(new_session("ab" * 32))
    assert SessionCodec(b"other", 3600).loads(cookie) is None
    other_salt = URLSafeTimedSerializer(b"a-secret", salt="something else")
    assert CODEC.loads(other_salt.dumps({"c": "x", "k": "ab" * 32})) is None
    for position in range(0, len(cookie), 7):
        flipped = (
            cookie[:position] + ("A" if cookie[position] != "A" else "B") + cookie[position + 1 :]
        )
        assert CODEC.loads(flipped) is None, position


class TwoHoursAgo(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 7200


def test_a_session_expires() -> None:
    signed_then = URLSafeTimedSerializer(b"a-secret", salt=SALT, signer=TwoHoursAgo)
    old = signed_then.dumps({"c": "token", "k": None})
    assert SessionCodec(b"a-secret", max_age_seconds=7300).loads(old) == Session("token")
    assert CODEC.loads(old) is None  # an hour's sessions


def test_a_signed_value_of_the_wrong_shape_is_no_session() -> None:
    signer = URLSafeTimedSerializer(b"a-secret", salt=SALT)
    for value in ([1, 2], {"c": 1, "k": None}, {"c": "t", "k": 5}, "text", None):
        assert CODEC.loads(signer.dumps(value)) is None


def test_the_csrf_check() -> None:
    session = Session("the-token", None)
    assert session.accepts("the-token")
    for wrong in (None, "", "the-token ", "THE-TOKEN", "other"):
        assert not session.accepts(wrong)
    assert new_session().csrf_token != new_session().csrf_token
