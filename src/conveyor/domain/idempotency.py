"""Idempotency keys on batch submission: what a key may look like and how long it holds.

A client sends `Idempotency-Key` with a submit and the same key with its own retries; the
server answers a repeat with the batch the first request made, and refuses the key with
another body. Bodies are compared by their SHA-256, taken while they stream in.
"""

from __future__ import annotations

import hashlib

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
TTL_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 255


class InvalidIdempotencyKey(ValueError):
    pass


def check_key(raw: str) -> str:
    """The key as given, if it is 1 to 255 printable ASCII characters."""
    if not raw or len(raw) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(f"An {HEADER} must be 1 to {MAX_KEY_LENGTH} characters long.")
    if not all(" " <= char <= "~" for char in raw):
        raise InvalidIdempotencyKey(f"An {HEADER} may hold printable ASCII characters only.")
    return raw


class BodyDigest:
    """SHA-256 of a body fed piece by piece as it arrives."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, piece: bytes) -> None:
        self._hash.update(piece)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
