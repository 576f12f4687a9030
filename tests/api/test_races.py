"""Two requests racing for the same new address or tag: answers, never a 500.

On PostgreSQL both transactions can pass the lookup before either inserts; the unique index
decides. On SQLite writers queue, so the race resolves earlier; the answers must match.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest

from conveyor.composition import Services
from tests.api.conftest import ClientFactory
from tests.api.support import add_member, assert_json, assert_problem
from tests.conftest import ApiUser


def meet_after(real: Callable[..., Any], barrier: threading.Barrier) -> Callable[..., Any]:
    """`real`, then (once per thread) wait for the other request to get this far too. On
    SQLite the other request is queued behind this one, so the wait gives up after a second."""
    waited: set[int] = set()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
        return result

    return wrapper


def race(*requests: Callable[[], httpx2.Response]) -> list[httpx2.Response]:
    with ThreadPoolExecutor(len(requests)) as pool:
        futures = [pool.submit(request) for request in requests]
        return sorted((future.result() for future in futures), key=lambda r: r.status_code)


def test_same_new_address_twice_at_once(
    api: ApiUser,
    list_id: str,
    services: Services,
    make_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    barrier = threading.Barrier(2, timeout=1)
    members = services.marketing_stores.members
    monkeypatch.setattr(members, "find", meet_after(members.find, barrier))
    second = make_client(api.key)
    body = {"email_address": "racer@example.com", "status": "subscribed"}
    url = f"/3.0/lists/{list_id}/members"
    winner, loser = race(
        lambda: api.client.post(url, json=body), lambda: second.post(url, json=body)
    )
    assert_json(winner)
    assert_problem(loser, 400, "Member Exists")
    listing = assert_json(api.client.get(url))
    assert [m["email_address"] for m in listing["members"]] == ["racer@example.com"]


def test_same_new_tag_on_two_members_at_once(
    api: ApiUser,
    list_id: str,
    services: Services,
    make_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one = add_member(api, list_id, "one@example.com")
    two = add_member(api, list_id, "two@example.com")
    barrier = threading.Barrier(2, timeout=1)
    members = services.marketing_stores.members
    monkeypatch.setattr(members, "_find_tag", meet_after(members._find_tag, barrier))
    second = make_client(api.key)
    body = {"tags": [{"name": "fresh", "status": "active"}]}
    base = f"/3.0/lists/{list_id}/members"
    responses = race(
        lambda: api.client.post(f"{base}/{one['id']}/tags", json=body),
        lambda: second.post(f"{base}/{two['id']}/tags", json=body),
    )
    assert [r.status_code for r in responses] == [204, 204], [r.text for r in responses]
    ids = {
        assert_json(api.client.get(f"{base}/{m['id']}/tags"))["tags"][0]["id"] for m in (one, two)
    }
    assert len(ids) == 1
