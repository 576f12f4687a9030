"""Identifiers: the shapes Mailchimp uses, generated from a CSPRNG."""

from __future__ import annotations

import hashlib
import secrets


def subscriber_hash(email: str) -> str:
    """MD5 of the lower-cased address, as the real service computes the member id."""
    return hashlib.md5(email.lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def hex_id(length: int) -> str:
    return secrets.token_hex((length + 1) // 2)[:length]


def new_api_key(dc: str) -> str:
    return f"{secrets.token_hex(16)}-{dc}"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
