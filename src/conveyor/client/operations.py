"""Builders for the batch operations everyone writes by hand.

Each returns the operation as a plain dict, ready for :meth:`Client.submit` or for any other
Mailchimp client: ``body`` is a JSON-encoded string (the form Mailchimp documents) and
``operation_id`` is always set, so every result can be matched to what asked for it. When no
``operation_id`` is given, member operations use the lower-cased email address; pass your own
(a row number, a database key) when one address appears in several operations of a batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import orjson

Operation = dict[str, Any]

# Mailchimp's maximum page size; fewer, larger pages mean fewer results to match up.
MAX_PAGE_SIZE = 1000


def subscriber_hash(email: str) -> str:
    """The member id: MD5 of the lower-cased address, as lower-case hex."""
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def _members_path(list_id: str) -> str:
    return f"/lists/{quote(list_id, safe='')}/members"


def _member_path(list_id: str, email: str) -> str:
    return f"{_members_path(list_id)}/{subscriber_hash(email)}"


def _operation(
    method: str,
    path: str,
    operation_id: str,
    *,
    body: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Operation:
    operation: Operation = {"method": method, "path": path, "operation_id": operation_id}
    if params:
        operation["params"] = dict(params)
    if body is not None:
        operation["body"] = orjson.dumps(dict(body)).decode()
    return operation


def _member_body(
    email: str,
    merge_fields: Mapping[str, Any] | None,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    body: dict[str, Any] = {"email_address": email.strip()}
    if merge_fields:
        body["merge_fields"] = dict(merge_fields)
    # Unset optional arguments are left out so they do not overwrite the member's stored values.
    body.update({key: value for key, value in extra.items() if value is not None})
    return body


def add_member(
    list_id: str,
    email: str,
    *,
    status: str = "subscribed",
    merge_fields: Mapping[str, Any] | None = None,
    tags: Iterable[str] | None = None,
    operation_id: str | None = None,
    **fields: Any,
) -> Operation:
    """``POST /lists/{id}/members``: fails with "Member Exists" if the address is on the list."""
    body = _member_body(email, merge_fields, {"status": status, **fields})
    if tags is not None:
        body["tags"] = list(tags)
    return _operation(
        "POST", _members_path(list_id), operation_id or email.strip().lower(), body=body
    )


def upsert_member(
    list_id: str,
    email: str,
    *,
    status_if_new: str = "subscribed",
    status: str | None = None,
    merge_fields: Mapping[str, Any] | None = None,
    operation_id: str | None = None,
    **fields: Any,
) -> Operation:
    """``PUT /lists/{id}/members/{hash}``: adds the address or updates it.

    ``status_if_new`` applies only to a new address; ``status``, if given, also changes an
    existing member's status (leave it out to keep unsubscribed members unsubscribed).
    """
    extra = {"status_if_new": status_if_new, "status": status, **fields}
    return _operation(
        "PUT",
        _member_path(list_id, email),
        operation_id or email.strip().lower(),
        body=_member_body(email, merge_fields, extra),
    )


def update_member(
    list_id: str,
    email: str,
    *,
    merge_fields: Mapping[str, Any] | None = None,
    operation_id: str | None = None,
    **fields: Any,
) -> Operation:
    """``PATCH /lists/{id}/members/{hash}``: changes only the given fields; 404 if absent."""
    body: dict[str, Any] = {key: value for key, value in fields.items() if value is not None}
    if merge_fields:
        body["merge_fields"] = dict(merge_fields)
    return _operation(
        "PATCH", _member_path(list_id, email), operation_id or email.strip().lower(), body=body
    )


def archive_member(list_id: str, email: str, *, operation_id: str | None = None) -> Operation:
    """``DELETE /lists/{id}/members/{hash}``: archives the member (204); it can come back."""
    return _operation("DELETE", _member_path(list_id, email), operation_id or email.strip().lower())


def tag_member(
    list_id: str,
    email: str,
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    is_syncing: bool | None = None,
    operation_id: str | None = None,
) -> Operation:
    """``POST /lists/{id}/members/{hash}/tags``: activates ``add``, deactivates ``remove``.

    Unknown tags in ``add`` are created; the answer is a 204 with an empty body.
    """
    tags = [{"name": name, "status": "active"} for name in add]
    tags += [{"name": name, "status": "inactive"} for name in remove]
    if not tags:
        raise ValueError("tag_member needs at least one tag to add or remove")
    body: dict[str, Any] = {"tags": tags}
    if is_syncing is not None:
        body["is_syncing"] = is_syncing
    return _operation(
        "POST",
        f"{_member_path(list_id, email)}/tags",
        operation_id or email.strip().lower(),
        body=body,
    )


def get_page(
    path: str,
    *,
    count: int = MAX_PAGE_SIZE,
    offset: int = 0,
    fields: Iterable[str] | None = None,
    exclude_fields: Iterable[str] | None = None,
    params: Mapping[str, Any] | None = None,
    operation_id: str | None = None,
) -> Operation:
    """One page of a collection: ``GET path?count=…&offset=…``.

    ``count`` is always sent: without it Mailchimp pages through the whole collection itself,
    one result per page under the same operation id. The default operation id is
    ``GET <path> <offset>``.
    """
    if not 1 <= count <= MAX_PAGE_SIZE:
        raise ValueError(f"count must be between 1 and {MAX_PAGE_SIZE}, got {count}")
    if offset < 0:
        raise ValueError(f"offset must not be negative, got {offset}")
    query: dict[str, Any] = dict(params or {})
    query["count"] = count
    query["offset"] = offset
    if fields is not None:
        query["fields"] = ",".join(fields)
    if exclude_fields is not None:
        query["exclude_fields"] = ",".join(exclude_fields)
    normalized = "/" + path.lstrip("/")
    return _operation("GET", normalized, operation_id or f"GET {normalized} {offset}", params=query)


def get_pages(
    path: str,
    total_items: int,
    *,
    page_size: int = MAX_PAGE_SIZE,
    fields: Iterable[str] | None = None,
    exclude_fields: Iterable[str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Iterator[Operation]:
    """The pages covering ``total_items`` (e.g. a list's member count), one operation each."""
    chosen = list(fields) if fields is not None else None
    excluded = list(exclude_fields) if exclude_fields is not None else None
    for offset in range(0, max(total_items, 0), page_size):
        yield get_page(
            path,
            count=page_size,
            offset=offset,
            fields=chosen,
            exclude_fields=excluded,
            params=params,
        )
