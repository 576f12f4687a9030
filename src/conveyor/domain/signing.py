"""Signed, expiring download URLs for a batch's results archive (``response_body_url``).

Local blob stores cannot presign, so the server signs its own URLs: an HMAC over the batch id
and the expiry, checked without any stored state.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from enum import StrEnum
from urllib.parse import quote, urlencode

DEFAULT_TTL_SECONDS = 600

# The purpose prefix keeps a signature minted here from verifying for any other use of the
# same secret; the version lets the message format change without accepting old forms by luck.
_PURPOSE = "conveyor.batch-download.v1"
_EXPIRES = re.compile(r"[0-9]{1,15}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


class DownloadCheck(StrEnum):
    OK = "ok"
    EXPIRED = "expired"
    INVALID = "invalid"


def _message(batch_id: str, expires_at: int) -> bytes:
    # Length-prefixing the id makes the message unambiguous whatever characters the id holds.
    return f"{_PURPOSE}\n{len(batch_id)}:{batch_id}\n{expires_at}".encode()


def sign_download(secret: bytes, batch_id: str, expires_at: int) -> str:
    if not secret:
        raise ValueError("the signing secret must not be empty")
    return hmac.new(secret, _message(batch_id, expires_at), hashlib.sha256).hexdigest()


def build_download_url(
    public_base: str,
    secret: bytes,
    batch_id: str,
    now: float,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
) -> str:
    if ttl_seconds <= 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
    expires_at = int(now) + ttl_seconds
    query = urlencode(
        {"expires": expires_at, "signature": sign_download(secret, batch_id, expires_at)}
    )
    base = public_base.rstrip("/")
    # `<id>-response.tar.gz`, the real archive's name: clients read the batch id from it.
    return f"{base}/3.0/batches/{quote(batch_id, safe='')}-response.tar.gz?{query}"


def verify_download(
    secret: bytes, batch_id: str, expires: str, signature: str, now: float
) -> DownloadCheck:
    """Check a download URL's query values; never raises on malformed input.

    The signature is checked before the expiry so that ``EXPIRED`` is only ever reported for a
    URL this server really minted.
    """
    if not secret or not _EXPIRES.fullmatch(expires):
        return DownloadCheck.INVALID
    candidate = signature.lower()
    if not _SIGNATURE.fullmatch(candidate):
        return DownloadCheck.INVALID
    expires_at = int(expires)
    if not hmac.compare_digest(sign_download(secret, batch_id, expires_at), candidate):
        return DownloadCheck.INVALID
    if now >= expires_at:
        return DownloadCheck.EXPIRED
    return DownloadCheck.OK
