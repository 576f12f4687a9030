"""A result row's answer as stored: a member answer without its links.

A member answer is ~3.1 KB, and 2.3 KB of it is its `_links`, which follow from the API
root, the list and the member alone. Stored whole, every result took a 4 KiB page of its own,
written twice (the WAL, then the database file) and read again for the archive; 1,000 rows
took 23-26 ms to insert and commit against 3-5 ms at 850 bytes (sqlite3, this machine). So
the links are left out when a result is stored (`compact`) and put back when it is read
(`expand`), byte for byte: `compact` keeps its short form only when `expand` gives the
answer back exactly, and stores anything else as it is.

The short form is the mark, the API root, the mark again and the answer up to its links.
An answer is JSON (or empty), which never starts with a control character; text that starts
with either mark all the same is stored behind the second one, so any text comes back as it
went in. The links are rebuilt by `domain/links.py`: a change there must come with a new
mark, as rows of the old one may be read for as long as batches are kept.
"""

from __future__ import annotations

import functools

import orjson

from conveyor.domain.links import member_links

_MARK = "\x01"
_AS_IS = "\x02"
# A member answer starts with its id (the 32-character subscriber hash) and ends with its
# list's id and its links.
_ID_START = '{"id":"'
_HASH_END = len(_ID_START) + 32
_LIST_ID = '"list_id":"'
_LINKS = ',"_links":'
_SELF_HREF = ',"_links":[{"rel":"self","href":"'
_MEMBERS = "/lists/"
# Stands for the member in a list's links, split out of them (it is not a character JSON
# writes unescaped).
_PLACEHOLDER = "\x00"


def compact(response: str) -> str:
    """`response` as stored: a member answer without its links, anything else unchanged."""
    if not response.startswith(_ID_START):
        return _AS_IS + response if response.startswith((_MARK, _AS_IS)) else response
    links_at = response.rfind(_SELF_HREF)
    if links_at < 0:
        return response
    root_at = links_at + len(_SELF_HREF)
    root_end = response.find(_MEMBERS, root_at)
    if root_end < 0:
        return response
    stored = _MARK + response[root_at:root_end] + _MARK + response[:links_at]
    return stored if expand(stored) == response else response


def expand(stored: str) -> str:
    """The answer `compact` stored as `stored`."""
    if not stored.startswith(_MARK):
        return stored[1:] if stored.startswith(_AS_IS) else stored
    root, _, answer = stored[1:].partition(_MARK)
    list_id = answer[answer.rfind(_LIST_ID) + len(_LIST_ID) : -1]
    member = answer[len(_ID_START) : _HASH_END]
    return answer + _LINKS + member.join(_links_around_member(root, list_id)) + "}"


@functools.lru_cache(maxsize=256)
def _links_around_member(root: str, list_id: str) -> list[str]:
    """A list's member links as JSON, in the pieces around each place the member goes:
    joined with a member's hash, they are that member's links (~0.5 µs, against ~4 µs to
    build and encode them)."""
    links = orjson.dumps(member_links(root, list_id, _PLACEHOLDER)).decode()
    return links.split(orjson.dumps(_PLACEHOLDER).decode()[1:-1])
