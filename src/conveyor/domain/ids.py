"""Identifiers: the shapes Mailchimp uses, generated from a CSPRNG."""

from __future__ import annotations

import functools
import hashlib
import secrets


# A member operation hashes its address several times on its way (grouping, reading ahead,
# the lookup, the insert): remembered for the addresses seen last, the rest cost nothing.
@functools.lru_cache(maxsize=4096)
def subscriber_hash(email: str) -> str:
    """MD5 of the lower-cased address, as the real service computes the member id."""
    return hashlib.md5(email.lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def hex_id(length: int) -> str:
    return secrets.token_hex((length + 1) // 2)[:length]


def member_ids(created: float) -> tuple[str, str]:
    """A new member's `unique_email_id` (10 hex digits) and `contact_id` (32), for a member
    created at `created` (seconds since the epoch, from the service's clock).

    The contact_id leads with that time in microseconds (13 hex digits, which wrap in 2112)
    and ends with 76 random bits, the way a UUIDv7 does. Its index then grows at one end:
    with a random contact_id every member insert dirtied a random leaf page of that index,
    and a 1M-member list spent more time writing those pages than executing."""
    digits = secrets.token_hex(15)
    micros = int(created * 1_000_000) % 16**13
    return digits[:10], f"{micros:013x}{digits[10:29]}"


def new_api_key(dc: str) -> str:
    return f"{secrets.token_hex(16)}-{dc}"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
