"""API key authentication: HTTP Basic (any user name) or a Bearer token."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from conveyor.domain.accounts import Account
from conveyor.domain.clock import Clock, SystemClock
from conveyor.domain.ids import key_hash


def credential_from_header(header: str | None) -> str | None:
    """The API key in an Authorization header, or None when there is none."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except ValueError:
            # Not base64 (binascii.Error), not UTF-8 inside, or not ASCII at all: header
            # values arrive as latin-1 text, and b64decode refuses a non-ASCII str outright.
            return ""
        return decoded.partition(":")[2]
    if scheme in ("bearer", "apikey", "oauth"):
        return value
    return ""


@dataclass
class KeyCache:
    """Remembers resolved keys briefly so a request costs no key lookup in the common case.

    A revoked key stops working within `ttl_seconds`.
    """

    lookup: Callable[[str], Account | None]
    clock: Clock = field(default_factory=SystemClock)
    ttl_seconds: float = 10.0
    _entries: dict[str, tuple[Account | None, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def cached(self, key: str) -> tuple[bool, Account | None]:
        """(True, the answer) when `key` was resolved recently; (False, None) otherwise.

        No I/O: the HTTP layer calls it on the event loop and goes to a thread only on a miss.
        """
        entry = self._entries.get(key_hash(key))
        if entry is not None and entry[1] > self.clock.monotonic():
            return True, entry[0]
        return False, None

    def clear(self) -> None:
        """Forget every key (the emulator's reset removes the accounts they named)."""
        with self._lock:
            self._entries.clear()

    def resolve(self, key: str) -> Account | None:
        digest = key_hash(key)
        now = self.clock.monotonic()
        entry = self._entries.get(digest)
        if entry is not None and entry[1] > now:
            return entry[0]
        account = self.lookup(key)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            # Unknown keys are remembered only briefly: a key created meanwhile works soon.
            ttl = self.ttl_seconds if account is not None else 1.0
            self._entries[digest] = (account, now + ttl)
        return account
