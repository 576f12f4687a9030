"""Issue 15, item 12: races that let a quota pass or gave the wrong answer.

- 520 submits at once never leave more than 500 batches waiting to start: the quota check
  and the new batch row are one transaction, one submit of an account at a time.
- A PUT racing a POST of the same new address updates it instead of answering Member Exists.
- A member added while its list is deleted is 404, never a 500, and leaves no member behind.

On PostgreSQL the racing transactions really overlap (a barrier holds each one after its
lookup until the other got there too); on SQLite writers queue, the barrier gives up after
a second, and the answers must be the same kind.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from conveyor.composition import Services
from conveyor.settings import Limits
from conveyor.storage.tables import batches, members
from tests.api.conftest import ClientFactory
from tests.api.support import assert_json, assert_problem, md5
from tests.batches.support import account_pk
from tests.conftest import LIST_BODY, ApiUser

SUBMITS = 520
QUOTA = 500


def test_520_submits_at_once_leave_at_most_500_unstarted_batches(
    api: ApiUser, services: Services, make_client: ClientFactory
) -> None:
    # Enough connections that the per-account limit lets every submit race (no runtime: the
    # batches stay pending).
    client = make_client(api.key, limits=Limits(max_concurrent_requests=SUBMITS))
    body = {"operations": [{"method": "GET", "path": "/ping"}]}

    def submit(_n: int) -> httpx2.Response:
        return client.post("/3.0/batches", json=body)

    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(submit, range(SUBMITS)))
    accepted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(accepted) == QUOTA, sorted({r.status_code for r in responses})
    for response in refused:
        problem = assert_problem(response, 429, "TooManyRequests")
        assert problem["detail"].startswith(f"You have more than {QUOTA} pending batches.")
    with services.database.read() as conn:
        stored = conn.execute(
            select(batches.c.status, func.count())
            .where(batches.c.account_pk == account_pk(services, api.account_id))
            .group_by(batches.c.status)
        ).all()
    assert dict(stored) == {"pending": QUOTA}


def test_a_put_racing_a_create_of_the_same_address_updates_it(
    api: ApiUser,
    list_id: str,
    services: Services,
    make_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    email = "racer@example.com"
    posted = threading.Event()
    store = services.marketing_stores.members
    real_find = store.find

    def find_then_let_the_post_win(conn: Any, list_pk: int, raw_key: str, **kwargs: Any) -> Any:
        found = real_find(conn, list_pk, raw_key, **kwargs)
        if raw_key == md5(email) and not posted.is_set():
            # The PUT looked and found nothing; the POST now adds the address and commits
            # before the PUT inserts (PostgreSQL; on SQLite the POST waits for this writer).
            posted.wait(1 if services.database.is_sqlite else 30)
        return found

    monkeypatch.setattr(store, "find", find_then_let_the_post_win)
    second = make_client(api.key)
    url = f"/3.0/lists/{list_id}/members"
    put_body = {"email_address": email, "status_if_new": "pending", "language": "fr"}

    def post() -> httpx2.Response:
        response = api.client.post(url, json={"email_address": email, "status": "subscribed"})
        posted.set()
        return response

    with ThreadPoolExecutor(2) as pool:
        put_future = pool.submit(lambda: second.put(f"{url}/{md5(email)}", json=put_body))
        post_future = pool.submit(post)
        put, post_answer = put_future.result(), post_future.result()
    assert assert_json(put)["language"] == "fr"
    listing = assert_json(api.client.get(url))
    assert [m["email_address"] for m in listing["members"]] == [email]
    assert listing["members"][0]["language"] == "fr"
    if services.database.is_sqlite:
        # Writers queue: whichever went first created the address.
        if post_answer.status_code != 200:
            assert_problem(post_answer, 400, "Member Exists")
    else:
        # The POST created it between the PUT's lookup and insert; the PUT updated it.
        assert assert_json(post_answer)["status"] == "subscribed"
        assert listing["members"][0]["status"] == "subscribed"


def test_a_member_added_while_its_list_is_deleted_is_404(
    api: ApiUser,
    services: Services,
    make_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    list_id = assert_json(api.client.post("/3.0/lists", json=LIST_BODY))["id"]
    other = make_client(api.key)
    deleted = threading.Event()

    def delete_list() -> None:
        assert other.delete(f"/3.0/lists/{list_id}").status_code == 204
        deleted.set()

    store = services.marketing_stores.members
    real_find = store.find

    def find_then_wait(*args: Any, **kwargs: Any) -> Any:
        found = real_find(*args, **kwargs)
        # The delete runs and commits between this lookup and the insert (PostgreSQL); on
        # SQLite it waits for this writer, so the wait gives up after a second.
        threading.Thread(target=delete_list).start()
        deleted.wait(1)
        return found

    monkeypatch.setattr(store, "find", find_then_wait)
    body = {"email_address": "late@example.com", "status": "subscribed"}
    response = api.client.post(f"/3.0/lists/{list_id}/members", json=body)
    monkeypatch.setattr(store, "find", real_find)
    assert deleted.wait(30)
    if services.database.is_sqlite:
        assert_json(response)  # it went first; the delete took the member with the list
    else:
        assert_problem(response, 404, "Resource Not Found")
    assert_problem(api.client.get(f"/3.0/lists/{list_id}"), 404)
    with services.database.read() as conn:
        left = conn.execute(
            select(func.count())
            .select_from(members)
            .where(members.c.account_pk == account_pk(services, api.account_id))
        ).scalar_one()
    assert left == 0
