"""``X-Mailchimp-Signature`` for batch-webhook deliveries: sign on the server, verify anywhere.

The header is ``t=<unix seconds>,v1=<hex>`` where ``v1`` is HMAC-SHA256 over
``"<t>.<raw body>"`` with the webhook's secret. The timestamp is inside the signed message, so a
captured delivery cannot be replayed later with a fresh ``t``; receivers refuse signatures older
than a tolerance (five minutes by default, as Mailchimp documents).

Pure functions only: the server's sender imports :func:`sign`, the client's receiver helpers
import :func:`verify`.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Mailchimp-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
_SCHEME = "v1"


def signature(secret: bytes, body: bytes, timestamp: int) -> str:
    """The lower-case hex ``v1`` value for ``body`` sent at ``timestamp``."""
    if not secret:
        # An empty key makes every signature forgeable; refuse rather than sign with it.
        raise ValueError("the webhook secret must not be empty")
    message = str(int(timestamp)).encode("ascii") + b"." + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The full header value, ``t=<timestamp>,v1=<hex>``."""
    return f"t={int(timestamp)},{_SCHEME}={signature(secret, body, timestamp)}"


def parse_header(value: str) -> tuple[int | None, list[str]]:
    """Split a header value into its timestamp and its ``v1`` signatures.

    Several ``v1`` entries are allowed (a sender rotating secrets may sign with both), unknown
    schemes are ignored so that a later ``v2`` does not break today's receivers, and a missing
    or non-numeric ``t`` gives ``None``.
    """
    timestamp: int | None = None
    signatures: list[str] = []
    for part in value.split(","):
        key, sep, item = part.strip().partition("=")
        if not sep:
            continue
        key = key.strip()
        item = item.strip()
        if key == "t":
            # isdigit() alone accepts non-ASCII digits such as "²", which int() refuses.
            timestamp = int(item) if item.isascii() and item.isdigit() else None
        elif key == _SCHEME and item.isascii() and item:
            # compare_digest refuses non-ASCII str, so such a value could only raise, never match.
            signatures.append(item.lower())
    return timestamp, signatures


def verify(
    secret: bytes,
    header_value: str | None,
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True if ``header_value`` signs ``body`` with ``secret`` within ``tolerance`` seconds.

    The age check is symmetric: a timestamp far in the future is as suspect as an old one, and
    a small clock skew between sender and receiver stays inside the tolerance either way. An
    empty secret raises ``ValueError``: it is a configuration mistake, not a bad delivery.
    """
    if not secret:
        raise ValueError("the webhook secret must not be empty")
    if not header_value:
        return False
    timestamp, candidates = parse_header(header_value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = signature(secret, body, timestamp)
    # Every candidate is compared (no early exit) so timing reveals nothing about which matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    return matched
