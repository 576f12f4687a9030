"""Idempotency keys: what a key may be, and the body digest taken piece by piece."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.domain.idempotency import BodyDigest, InvalidIdempotencyKey, check_key


@pytest.mark.parametrize("key", ["a", "0" * 32, "x" * 255, "with space", "~!@#$%^&*()"])
def test_printable_ascii_keys_up_to_255(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "new\nline", "caf\u00e9", "\x7f"])
def test_other_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidIdempotencyKey):
        check_key(key)


@given(st.lists(st.binary(max_size=64), max_size=8))
def test_the_digest_of_pieces_is_the_digest_of_the_whole(pieces: list[bytes]) -> None:
    digest = BodyDigest()
    for piece in pieces:
        digest.update(piece)
    assert digest.hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()
