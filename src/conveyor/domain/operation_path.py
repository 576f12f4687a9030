"""Validation of a batch operation's ``path``.

The path comes from the client and is dispatched in-process, so anything that is not a plain
relative API path is refused before routing: a scheme or host could aim the executor elsewhere,
dot segments could climb out of the intended resource, and a batch must never create or read
batches. Percent-encoded forms are checked too because the router sees the decoded path.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import parse_qsl, unquote

MAX_PATH_LENGTH = 2048
MAX_QUERY_FIELDS = 100
API_PREFIX = "3.0"
FORBIDDEN_FIRST_SEGMENTS = frozenset({"batches", "batch-webhooks"})

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_BAD_PERCENT = re.compile(r"%(?![0-9a-fA-F]{2})")
_ENCODED_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
# Characters that would change a decoded segment's meaning for the router or a later decoder.
_RESERVED_IN_SEGMENT = frozenset("/\\?#")


class UnsafeOperationPath(ValueError):
    """The message is a complete sentence fit for a problem document's ``detail``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _has_control_or_space(text: str) -> bool:
    # Categories C* (control, format, unassigned...) and Z* (spaces, line/paragraph separators).
    return any(unicodedata.category(ch)[0] in "CZ" for ch in text)


def _check_raw(path: str) -> None:
    if not path:
        raise UnsafeOperationPath("The operation path is empty.")
    if len(path) > MAX_PATH_LENGTH:
        raise UnsafeOperationPath(
            f"The operation path is longer than {MAX_PATH_LENGTH} characters."
        )
    if _has_control_or_space(path):
        raise UnsafeOperationPath(
            "The operation path must not contain whitespace or control characters."
        )
    if "\\" in path:
        raise UnsafeOperationPath("The operation path must not contain backslashes.")
    if "#" in path:
        raise UnsafeOperationPath("The operation path must not contain a fragment ('#').")
    if _SCHEME.match(path):
        raise UnsafeOperationPath(
            "The operation path must be relative to /3.0 and must not include a scheme."
        )
    if "//" in path:
        raise UnsafeOperationPath(
            "The operation path must not name a host or contain empty segments ('//')."
        )
    if _BAD_PERCENT.search(path):
        raise UnsafeOperationPath("The operation path contains a malformed percent-encoding.")


def _decode_segment(segment: str) -> str:
    try:
        decoded = unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise UnsafeOperationPath(
            "The operation path contains percent-encoded bytes that are not UTF-8."
        ) from None
    if decoded in {".", ".."}:
        raise UnsafeOperationPath("The operation path must not contain '.' or '..' segments.")
    if _RESERVED_IN_SEGMENT.intersection(decoded):
        raise UnsafeOperationPath(
            "The operation path must not contain percent-encoded '/', '\\', '?' or '#'."
        )
    if _has_control_or_space(decoded):
        raise UnsafeOperationPath(
            "The operation path must not contain whitespace or control characters."
        )
    if _ENCODED_ESCAPE.search(decoded):
        raise UnsafeOperationPath("The operation path must not be percent-encoded twice.")
    return decoded


# The shape nearly every real operation path has: plain segments, none of them `.` or `..`
# (no segment may start with a dot), nothing to decode. It skips the careful checks below,
# which cost tens of microseconds per operation on the batch hot path.
_PLAIN_PATH = re.compile(
    r"/?([A-Za-z0-9_@+-][A-Za-z0-9_@.+-]*(?:/[A-Za-z0-9_@+-][A-Za-z0-9_@.+-]*)*)/?"
)


def normalize_operation_path(path: str) -> str:
    """Return the percent-decoded path relative to /3.0: ``/a/b``, one leading slash, no trailing.

    The path must not carry a query; use :func:`split_operation_path` for paths that may.
    """
    plain = _PLAIN_PATH.fullmatch(path) if len(path) <= MAX_PATH_LENGTH else None
    if plain is not None:
        relative = plain.group(1)
        if relative == API_PREFIX or relative.startswith(API_PREFIX + "/"):
            relative = relative[len(API_PREFIX) :].removeprefix("/")
        first = relative.partition("/")[0]
        if relative and first.lower() not in FORBIDDEN_FIRST_SEGMENTS:
            return "/" + relative
    if "?" in path:
        raise UnsafeOperationPath(
            "The operation path must not contain a query here; pass it in params."
        )
    _check_raw(path)
    relative = path.removeprefix("/")
    # Some clients send the full API path; routes are relative to /3.0.
    if relative == API_PREFIX or relative.startswith(API_PREFIX + "/"):
        relative = relative[len(API_PREFIX) :].removeprefix("/")
    relative = relative.removesuffix("/")
    if not relative:
        raise UnsafeOperationPath("The operation path does not name a resource.")
    segments = [_decode_segment(segment) for segment in relative.split("/")]
    if segments[0].lower() in FORBIDDEN_FIRST_SEGMENTS:
        raise UnsafeOperationPath("A batch operation must not target the batch endpoints.")
    return "/" + "/".join(segments)


def split_operation_path(path: str) -> tuple[str, dict[str, str]]:
    """Split ``path?query`` into the normalized path and its query parameters.

    A key given several times has its values joined with commas, as list params are. The
    caller merges the operation's ``params`` over this dict, so ``params`` win.
    """
    raw_path, _, query = path.partition("?")
    normalized = normalize_operation_path(raw_path)
    if not query:
        return normalized, {}
    if _has_control_or_space(query) or "#" in query or "\\" in query:
        raise UnsafeOperationPath(
            "The operation path's query must not contain whitespace, control characters, "
            "backslashes or '#'."
        )
    try:
        pairs = parse_qsl(
            query, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_FIELDS
        )
    except UnicodeDecodeError:
        raise UnsafeOperationPath(
            "The operation path's query contains percent-encoded bytes that are not UTF-8."
        ) from None
    except ValueError:
        raise UnsafeOperationPath(
            f"The operation path's query has more than {MAX_QUERY_FIELDS} fields."
        ) from None
    params: dict[str, str] = {}
    for key, value in pairs:
        params[key] = f"{params[key]},{value}" if key in params else value
    return normalized, params
