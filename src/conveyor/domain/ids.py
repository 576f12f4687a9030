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


def member_ids() -> tuple[str, str]:
    """A new member's `unique_email_id` (10 hex digits) and `contact_id` (32): one draw
    from the CSPRNG for both."""
    digits = secrets.token_hex(21)
    return digits[:10], digits[10:]


def new_api_key(dc: str) -> str:
    return f"{secrets.token_hex(16)}-{dc}"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
