"""The dashboard's session cookie and its CSRF token: pure, no I/O.

The cookie is signed (itsdangerous), never encrypted, so it holds nothing secret: the SHA-256
of the API key that signed in (the key itself never leaves the sign-in request) and a random
nonce. Each request looks the hash up among the active keys, so revoking the key ends every
session made with it on the next request. The nonce is the CSRF token every form carries
(the synchronizer-token pattern): a page of another origin can neither read the HttpOnly
cookie nor, with SameSite=Strict, make the browser send it.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE_NAME = "conveyor_dashboard"
SALT = "conveyor.http.dashboard.session"


@dataclass(frozen=True, slots=True)
class Session:
    csrf_token: str
    # The SHA-256 of the signed-in key; None before sign-in (the sign-in form has a token too).
    key_hash: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.key_hash is not None

    def accepts(self, submitted: str | None) -> bool:
        """Whether a form's CSRF token is this session's."""
        return submitted is not None and hmac.compare_digest(submitted, self.csrf_token)


def new_session(key_hash: str | None = None) -> Session:
    """A fresh session: a new CSRF token at every sign-in and sign-out (no fixation)."""
    return Session(secrets.token_urlsafe(24), key_hash)


@dataclass(frozen=True)
class SessionCodec:
    """Turns a session into a cookie value and back; a cookie older than `max_age_seconds`,
    altered, or signed with another secret reads as no session."""

    secret: bytes
    max_age_seconds: int

    @property
    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.secret, salt=SALT)

    def dumps(self, session: Session) -> str:
        return self._serializer.dumps({"c": session.csrf_token, "k": session.key_hash})

    def loads(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age_seconds)
        except BadSignature:  # SignatureExpired is one too
            return None
        if not isinstance(data, dict):
            return None
        token, key_hash = data.get("c"), data.get("k")
        if not isinstance(token, str) or not (key_hash is None or isinstance(key_hash, str)):
            return None
        return Session(token, key_hash)
