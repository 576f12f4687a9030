"""The unstarted-batches cap, isolation between accounts, and retention."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from conveyor.batches import executor
from conveyor.composition import Services
from conveyor.domain.clock import OffsetClock
from conveyor.domain.signing import build_download_url
from conveyor.domain.states import BatchStatus
from conveyor.runtime.embedded import EmbeddedRuntime
from conveyor.storage.tables import batches
from tests.batches.support import (
    NO_ROWS,
    account_batch_ids,
    assert_problem,
    batch_rows,
    download,
    drive,
    fetch_archive,
    get_batch,
    submit,
)
from tests.conftest import LIST_BODY, ApiUser

GET_LISTS = [{"method": "GET", "path": "lists"}]


@pytest.mark.batch_settings(max_unstarted_batches=3)
def test_too_many_unstarted_batches_is_429(
    api: ApiUser, other_api: ApiUser, services: Services
) -> None:
    """Without a runtime, submitted batches stay pending and count against the cap."""
    first = [submit(api.client, GET_LISTS)["id"] for _ in range(3)]
    response = api.client.post("/3.0/batches", json={"operations": GET_LISTS})
    problem = assert_problem(response, 429, "TooManyRequests")
    assert "3" in problem["detail"]
    assert sorted(account_batch_ids(services, api.account_id)) == sorted(first)

    # The cap is per account.
    submit(other_api.client, GET_LISTS)

    # A batch in preprocessing still counts; one that has started does not.
    engine = services.engine
    with services.database.write() as conn:
        assert services.batch_store.move(
            conn, first[0], BatchStatus.PENDING, BatchStatus.PREPROCESSING
        )
    assert_problem(api.client.post("/3.0/batches", json={"operations": GET_LISTS}), 429)
    engine.preprocess(first[0])
    assert get_batch(api.client, first[0])["status"] == "started"
    submit(api.client, GET_LISTS)
    assert_problem(api.client.post("/3.0/batches", json={"operations": GET_LISTS}), 429)
    # Finished batches do not count either.
    drive(services, first[1])
    submit(api.client, GET_LISTS)


# --- isolation ---------------------------------------------------------------------------------


def test_another_account_cannot_see_download_or_delete(
    batch_api: ApiUser, batch_other_api: ApiUser, runtime: EmbeddedRuntime, services: Services
) -> None:
    mine = submit(batch_api.client, GET_LISTS)
    theirs = submit(batch_other_api.client, GET_LISTS)
    runtime.join()
    batch = get_batch(batch_api.client, mine["id"])
    path = f"/3.0/batches/{mine['id']}"
    other = batch_other_api.client

    assert_problem(other.get(path), 404)
    assert_problem(other.get(path, params={"fields": "id"}), 404)
    assert_problem(other.delete(path), 404)
    listed = other.get("/3.0/batches", params={"count": 1000}).json()
    assert [b["id"] for b in listed["batches"]] == [theirs["id"]]
    assert listed["total_items"] == 1

    # Their own signed URL does not open my batch: the signature is bound to the batch id.
    their_url = get_batch(other, theirs["id"])["response_body_url"]
    query = their_url.split("?", 1)[1]
    assert_problem(download(other, f"{path}-response.tar.gz?{query}"), 403)

    # Nothing they tried changed my batch.
    assert get_batch(batch_api.client, mine["id"])["status"] == "finished"
    assert download(batch_api.client, batch["response_body_url"]).status_code == 200
    assert batch_rows(services, mine["id"])["batches"] == 1


def test_a_batch_runs_as_its_own_account(
    batch_api: ApiUser, batch_other_api: ApiUser, runtime: EmbeddedRuntime
) -> None:
    """Operations see only the submitting account's data."""
    theirs = batch_other_api.client.post(
        "/3.0/lists",
        json={
            "name": "Theirs",
            "permission_reminder": "r",
            "email_type_option": False,
            "contact": {
                "company": "B",
                "address1": "2 Side St",
                "city": "Shelbyville",
                "state": "IL",
                "zip": "62565",
                "country": "US",
            },
            "campaign_defaults": {
                "from_name": "B",
                "from_email": "b@example.org",
                "subject": "s",
                "language": "en",
            },
        },
    ).json()["id"]
    batch = submit(
        batch_api.client,
        [
            {"method": "GET", "path": f"lists/{theirs}", "operation_id": "read"},
            {"method": "DELETE", "path": f"lists/{theirs}", "operation_id": "delete"},
        ],
    )
    runtime.join()
    done = get_batch(batch_api.client, batch["id"])
    assert (done["finished_operations"], done["errored_operations"]) == (2, 2)
    assert batch_other_api.client.get(f"/3.0/lists/{theirs}").status_code == 200


# --- retention ---------------------------------------------------------------------------------


def test_retention_purges_batches_rows_and_archives(
    api: ApiUser, services: Services, clock: OffsetClock
) -> None:
    client = api.client
    finished = submit(client, GET_LISTS * 3)["id"]
    drive(services, finished)
    url = get_batch(client, finished)["response_body_url"]
    archives = list(Path(services.settings.blob_dir).rglob("*.tar.gz"))
    assert len(archives) == 1
    pending = submit(client, GET_LISTS * 3)["id"]  # its operation rows are still there
    assert batch_rows(services, pending)["batch_operations"] == 3

    engine = services.engine
    assert engine.purge_expired() == 0  # nothing is old yet
    clock.advance(services.settings.batches.retention_seconds + 60)
    assert engine.purge_expired() == 2

    for batch_id in (finished, pending):
        assert batch_rows(services, batch_id) == NO_ROWS
        assert_problem(client.get(f"/3.0/batches/{batch_id}"), 404)
    assert not archives[0].exists()
    # The old link has expired by now; a freshly signed one finds nothing either.
    assert_problem(download(client, url), 403)
    fresh = build_download_url("http://testserver", services.secret, finished, clock.now())
    assert_problem(download(client, fresh), 404)


def test_batches_older_than_retention_are_not_listed(api: ApiUser, services: Services) -> None:
    old = submit(api.client, GET_LISTS)["id"]
    new = submit(api.client, GET_LISTS)["id"]
    eight_days = 8 * 24 * 3600
    with services.database.write() as conn:
        conn.execute(
            batches.update()
            .where(batches.c.id == old)
            .values(submitted_ts=batches.c.submitted_ts - eight_days)
        )
    listed = api.client.get("/3.0/batches").json()
    assert [b["id"] for b in listed["batches"]] == [new]
    assert listed["total_items"] == 1
    # The scheduler's next purge removes it.
    assert services.engine.purge_expired() == 1
    assert batch_rows(services, old) == NO_ROWS
    assert batch_rows(services, new)["batches"] == 1


# --- one operation's size ------------------------------------------------------------------------


def _member_put(list_hint: str, body: str, operation_id: str = "op") -> dict[str, str]:
    return {"method": "PUT", "path": f"lists/{list_hint}/members/x", "body": body,
            "operation_id": operation_id}  # fmt: skip


@pytest.mark.batch_settings(
    max_operation_body_bytes=1_000, max_operation_id_chars=50, max_operation_path_chars=200
)
@pytest.mark.parametrize(
    ("operation", "field"),
    [
        # 250 characters of 4 bytes each: over the byte limit, though under it in characters.
        (_member_put("l1", '{"merge_fields": {"FNAME": "' + "😀" * 250 + '"}}'), "body"),
        (_member_put("l1", "{}", operation_id="o" * 51), "operation_id"),
        ({"method": "GET", "path": "lists/" + "p" * 200}, "path"),
        ({"method": "GET", "path": "lists", "params": {"fields": "f" * 200}}, "path"),
    ],
    ids=["body in bytes", "operation_id", "path", "params"],
)
def test_an_operation_larger_than_a_request_refuses_the_batch(
    api: ApiUser, services: Services, operation: dict[str, object], field: str
) -> None:
    fine = _member_put("l1", '{"merge_fields": {"FNAME": "' + "a" * 900 + '"}}', "o" * 50)
    response = api.client.post("/3.0/batches", json={"operations": [fine, fine, operation]})
    problem = assert_problem(response, 400)
    assert f"operations[2].{field}" in problem["detail"]
    assert account_batch_ids(services, api.account_id) == []
    # Nothing was kept of it: the next batch is taken whole.
    assert submit(api.client, [fine])["total_operations"] == 1


@pytest.mark.batch_settings(max_result_bytes=20_000)
def test_a_result_over_the_cap_is_replaced_and_the_rest_kept(
    api: ApiUser, services: Services
) -> None:
    list_id = api.client.post("/3.0/lists", json=LIST_BODY).json()["id"]
    notes = "n" * 5_000
    adds = [
        {"method": "POST", "path": f"lists/{list_id}/members", "operation_id": f"add-{i}",
         "body": orjson.dumps({"email_address": f"big{i}@example.org", "status": "subscribed",
                               "merge_fields": {"FNAME": notes}}).decode()}
        for i in range(6)
    ]  # fmt: skip
    pages = {"method": "GET", "path": f"lists/{list_id}/members", "operation_id": "page",
             "params": {"count": "10"}}  # fmt: skip
    one = {"method": "GET", "path": f"lists/{list_id}/members", "operation_id": "one",
           "params": {"count": "1"}}  # fmt: skip
    batch = submit(api.client, [*adds, pages, one])
    drive(services, batch["id"])
    done = get_batch(api.client, batch["id"])
    by_id = fetch_archive(api.client, done).by_operation_id()
    # Six members of 5,000 characters each: a page of all of them is over 20,000 bytes.
    assert by_id["page"][0]["status_code"] == 400
    problem = orjson.loads(by_id["page"][0]["response"])
    assert problem["title"] == "Response Too Large" and "`count`" in problem["detail"]
    assert len(by_id["page"][0]["response"]) < 1_000
    assert by_id["one"][0]["status_code"] == 200
    assert {by_id[f"add-{i}"][0]["status_code"] for i in range(6)} == {200}
    assert done["errored_operations"] == 1


def test_a_group_writes_its_rows_ahead_once_they_are_large(
    api: ApiUser, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every operation's rows flushed as it comes: the same archive, counters and members."""
    monkeypatch.setattr(executor, "FLUSH_BYTES", 1)
    list_id = api.client.post("/3.0/lists", json=LIST_BODY).json()["id"]
    operations = [
        {"method": "POST", "path": f"lists/{list_id}/members", "operation_id": f"op-{i}",
         "body": orjson.dumps({"email_address": f"u{i % 7}@example.org",
                               "status": "subscribed"}).decode()}
        for i in range(20)
    ]  # fmt: skip
    batch = submit(api.client, [*operations, {"method": "GET", "path": "lists"}])
    drive(services, batch["id"])
    done = get_batch(api.client, batch["id"])
    archive = fetch_archive(api.client, done)
    assert [r["operation_id"] for r in archive.results] == [f"op-{i}" for i in range(20)] + [None]
    assert [r["status_code"] for r in archive.results[:20]] == [200] * 7 + [400] * 13
    assert (done["finished_operations"], done["errored_operations"]) == (21, 13)
