"""Idempotency-Key on POST /3.0/batches: a repeat answers the batch the first request made and
makes nothing; another body under the key is refused; concurrent submits make one batch."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from conveyor.composition import Services
from conveyor.domain.clock import OffsetClock
from conveyor.settings import Limits
from conveyor.storage.tables import idempotency_keys
from tests.batches.support import (
    account_batch_ids,
    assert_batch,
    assert_problem,
    drive,
    get_batch,
)
from tests.conftest import ApiUser

PINGS = {"operations": [{"method": "GET", "path": "/ping", "operation_id": "a"}]}
OTHER = {"operations": [{"method": "GET", "path": "/ping", "operation_id": "b"}]}


def post(client: httpx2.Client, body: Any, key: str | None) -> httpx2.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/3.0/batches", content=json.dumps(body).encode(), headers=headers)


def key_rows(services: Services) -> int:
    with services.database.read() as conn:
        return int(conn.execute(select(func.count()).select_from(idempotency_keys)).scalar_one())


def test_a_repeat_answers_the_same_batch_and_makes_nothing(
    api: ApiUser, services: Services
) -> None:
    first = post(api.client, PINGS, "k-1")
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    made = assert_batch(first.json())
    drive(services, made["id"])

    again = post(api.client, PINGS, "k-1")
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    replayed = assert_batch(again.json())
    # The same batch, as it is now (finished, with its archive URL).
    assert replayed["id"] == made["id"]
    assert replayed["status"] == "finished"
    assert account_batch_ids(services, api.account_id) == [made["id"]]


def test_another_body_under_the_key_is_refused(api: ApiUser) -> None:
    assert post(api.client, PINGS, "k-2").status_code == 200
    refused = post(api.client, OTHER, "k-2")
    problem = assert_problem(refused, 422, "Idempotency Key Reused")
    assert "Idempotency-Key" in problem["detail"]
    # Bodies are compared byte for byte: the same JSON written differently is another body.
    spaced = api.client.post(
        "/3.0/batches",
        content=json.dumps(PINGS, indent=2).encode(),
        headers={"Idempotency-Key": "k-2"},
    )
    assert_problem(spaced, 422, "Idempotency Key Reused")


def test_keys_belong_to_one_account(api: ApiUser, other_api: ApiUser, services: Services) -> None:
    mine = post(api.client, PINGS, "shared").json()["id"]
    theirs = post(other_api.client, OTHER, "shared")
    assert theirs.status_code == 200 and "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != mine
    assert account_batch_ids(services, other_api.account_id) == [theirs.json()["id"]]


def test_without_a_key_every_submit_is_a_new_batch(api: ApiUser, services: Services) -> None:
    ids = {post(api.client, PINGS, None).json()["id"] for _ in range(3)}
    assert len(ids) == 3
    assert key_rows(services) == 0


def test_a_key_holds_24_hours_and_is_then_purged(
    api: ApiUser, services: Services, clock: OffsetClock
) -> None:
    first = post(api.client, PINGS, "day").json()["id"]
    clock.advance(23 * 3600)
    assert post(api.client, OTHER, "day").status_code == 422
    clock.advance(3600 + 1)
    # Expired: the key makes a new batch, with any body.
    renewed = post(api.client, OTHER, "day")
    assert renewed.status_code == 200 and "idempotent-replayed" not in renewed.headers
    assert renewed.json()["id"] != first
    assert key_rows(services) == 1
    clock.advance(24 * 3600 + 1)
    services.engine.purge_expired()  # the scheduler's retention pass
    assert key_rows(services) == 0


def test_a_deleted_batch_frees_its_key(api: ApiUser, services: Services) -> None:
    first = post(api.client, PINGS, "gone").json()["id"]
    assert api.client.delete(f"/3.0/batches/{first}").status_code == 204
    assert key_rows(services) == 0
    again = post(api.client, PINGS, "gone")
    assert again.status_code == 200 and "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first


@pytest.mark.parametrize(
    "key",
    [b"", b"x" * 256, "caf\u00e9".encode(), b"tab\there"],
    ids=["empty", "long", "non-ascii", "tab"],
)
def test_a_malformed_key_is_a_problem(api: ApiUser, services: Services, key: bytes) -> None:
    response = api.client.post(
        "/3.0/batches", content=json.dumps(PINGS).encode(), headers={b"Idempotency-Key": key}
    )
    assert_problem(response, 400, "Bad Request")
    assert account_batch_ids(services, api.account_id) == []


def test_a_failed_submit_leaves_the_key_free(api: ApiUser) -> None:
    broken = post(api.client, {"operations": "no"}, "retry-me")
    assert_problem(broken, 400)
    assert post(api.client, PINGS, "retry-me").status_code == 200


@pytest.mark.batch_settings(max_unstarted_batches=1)
def test_a_replay_needs_no_room_in_the_quota(api: ApiUser) -> None:
    made = post(api.client, PINGS, "quota").json()["id"]
    assert_problem(post(api.client, OTHER, None), 429)  # one unstarted batch: the quota
    assert post(api.client, PINGS, "quota").json()["id"] == made


# Twenty at once: more than the default ten connections of one account.
@pytest.mark.settings(limits=Limits(max_concurrent_requests=32))
def test_twenty_concurrent_submits_under_one_key_make_one_batch(
    api: ApiUser, services: Services
) -> None:
    operations = [{"method": "GET", "path": "/ping", "operation_id": f"p{i}"} for i in range(50)]
    body = {"operations": operations}
    start = threading.Barrier(20)

    def one() -> httpx2.Response:
        start.wait()
        return post(api.client, body, "together")

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: one(), range(20)))
    assert [answer.status_code for answer in answers] == [200] * 20, [
        answer.text for answer in answers if answer.status_code != 200
    ]
    ids = {answer.json()["id"] for answer in answers}
    assert len(ids) == 1
    replayed = [answer.headers.get("idempotent-replayed") for answer in answers]
    assert replayed.count(None) == 1 and replayed.count("true") == 19
    # Exactly one batch, whole; the losers' copies are gone (none left ingesting).
    (batch_id,) = ids
    assert account_batch_ids(services, api.account_id) == [batch_id]
    drive(services, batch_id)
    assert get_batch(api.client, batch_id)["finished_operations"] == 50
    assert key_rows(services) == 1
