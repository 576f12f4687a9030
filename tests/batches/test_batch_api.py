"""The Batch endpoints' shapes: submit, list, get one, delete."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.batches.engine import BatchEngine
from conveyor.composition import Services
from conveyor.domain.operations import Operation
from conveyor.domain.steps import FollowUp
from conveyor.runtime.embedded import EmbeddedRuntime
from tests.batches.support import (
    BATCH_LIST_SCHEMA,
    NO_ROWS,
    account_pk,
    assert_batch,
    assert_problem,
    batch_rows,
    create_list,
    download,
    get_batch,
    list_members,
    member_posts,
    orphan_rows,
    shape_errors,
    submit,
)
from tests.conftest import ApiUser

GET_LISTS = [{"method": "GET", "path": "lists"}]


def test_submit_answers_a_pending_batch_in_the_spec_shape(api: ApiUser) -> None:
    batch = submit(api.client, GET_LISTS * 3)
    assert batch["status"] == "pending"
    assert (batch["finished_operations"], batch["errored_operations"]) == (0, 0)
    assert batch["completed_at"] == ""
    assert batch["response_body_url"] == ""
    # Reading it back gives the same batch.
    assert get_batch(api.client, batch["id"]) == batch


def test_finished_batch_has_completed_at_and_url(
    batch_api: ApiUser, runtime: EmbeddedRuntime
) -> None:
    batch = submit(batch_api.client, GET_LISTS)
    runtime.join()
    done = get_batch(batch_api.client, batch["id"])
    assert done["status"] == "finished"
    assert done["submitted_at"] == batch["submitted_at"]
    assert (done["total_operations"], done["finished_operations"]) == (1, 1)


def test_ids_are_distinct(api: ApiUser) -> None:
    ids = {submit(api.client, GET_LISTS)["id"] for _ in range(20)}
    assert len(ids) == 20


def test_get_unknown_batch_is_404(api: ApiUser) -> None:
    assert_problem(api.client.get("/3.0/batches/0123456789"), 404, "Resource Not Found")
    assert_problem(api.client.get("/3.0/batches/not-an-id"), 404, "Resource Not Found")
    assert_problem(api.client.delete("/3.0/batches/0123456789"), 404, "Resource Not Found")


def test_batch_endpoints_need_a_key(api: ApiUser) -> None:
    batch = submit(api.client, GET_LISTS)
    for method, path in [
        ("POST", "/3.0/batches"),
        ("GET", "/3.0/batches"),
        ("GET", f"/3.0/batches/{batch['id']}"),
        ("DELETE", f"/3.0/batches/{batch['id']}"),
    ]:
        # auth=None: this request only, without the client's credentials.
        response = api.client.request(method, path, auth=None, json={"operations": []})  # type: ignore[arg-type]
        assert_problem(response, 401, "API Key Missing")
    assert get_batch(api.client, batch["id"])["id"] == batch["id"]


def test_get_one_with_fields_and_exclude_fields(api: ApiUser) -> None:
    batch = submit(api.client, GET_LISTS)
    path = f"/3.0/batches/{batch['id']}"
    only = api.client.get(path, params={"fields": "id,status"})
    assert only.json() == {"id": batch["id"], "status": "pending"}
    without = api.client.get(path, params={"exclude_fields": "_links,response_body_url"}).json()
    assert "_links" not in without and "response_body_url" not in without
    assert without["id"] == batch["id"]


# --- the list --------------------------------------------------------------------------------


def test_list_pages_with_count_and_offset(api: ApiUser) -> None:
    submitted = [submit(api.client, GET_LISTS)["id"] for _ in range(12)]
    first = api.client.get("/3.0/batches")
    assert first.status_code == 200
    body = first.json()
    assert not shape_errors(body, BATCH_LIST_SCHEMA)
    assert set(body) == {"batches", "total_items", "_links"}
    assert body["total_items"] == 12
    assert len(body["batches"]) == 10  # the default count
    for batch in body["batches"]:
        assert_batch(batch)
    rels = {link["rel"]: link for link in body["_links"]}
    assert rels["self"]["href"] == "http://testserver/3.0/batches"
    assert rels["create"]["method"] == "POST"

    seen: list[str] = []
    for offset in range(0, 12, 5):
        page = api.client.get("/3.0/batches", params={"count": 5, "offset": offset}).json()
        assert page["total_items"] == 12
        assert len(page["batches"]) == min(5, 12 - offset)
        seen.extend(batch["id"] for batch in page["batches"])
    # Every batch once, across pages: the order is stable.
    assert sorted(seen) == sorted(submitted)
    past_end = api.client.get("/3.0/batches", params={"offset": 50}).json()
    assert (past_end["batches"], past_end["total_items"]) == ([], 12)


def test_list_fields_and_exclude_fields(api: ApiUser) -> None:
    batch = submit(api.client, GET_LISTS)
    only = api.client.get("/3.0/batches", params={"fields": "batches.id,total_items"}).json()
    assert only == {"batches": [{"id": batch["id"]}], "total_items": 1}
    without = api.client.get(
        "/3.0/batches", params={"exclude_fields": "_links,batches._links,batches.status"}
    ).json()
    assert "_links" not in without
    assert set(without["batches"][0]) == {
        "id",
        "total_operations",
        "finished_operations",
        "errored_operations",
        "submitted_at",
        "completed_at",
        "response_body_url",
    }


@pytest.mark.parametrize("query", [{"count": "many"}, {"offset": "-1"}, {"count": "-5"}])
def test_list_rejects_bad_paging(api: ApiUser, query: dict[str, str]) -> None:
    assert_problem(api.client.get("/3.0/batches", params=query), 400)


def test_list_caps_count_at_1000(api: ApiUser) -> None:
    submit(api.client, GET_LISTS)
    response = api.client.get("/3.0/batches", params={"count": 5000})
    assert response.status_code == 200
    assert response.json()["total_items"] == 1


# --- delete ----------------------------------------------------------------------------------


def test_delete_removes_everything(
    batch_api: ApiUser, runtime: EmbeddedRuntime, services: Services
) -> None:
    client = batch_api.client
    batch = submit(client, GET_LISTS * 3)
    runtime.join()
    done = get_batch(client, batch["id"])
    url = done["response_body_url"]
    assert download(client, url).status_code == 200
    archives = list(Path(services.settings.blob_dir).rglob("*.tar.gz"))
    assert len(archives) == 1

    response = client.delete(f"/3.0/batches/{batch['id']}")
    assert response.status_code == 204
    assert response.content == b""

    assert_problem(client.get(f"/3.0/batches/{batch['id']}"), 404)
    assert_problem(client.delete(f"/3.0/batches/{batch['id']}"), 404)
    assert_problem(download(client, url), 404)
    assert client.get("/3.0/batches").json()["total_items"] == 0
    assert batch_rows(services, batch["id"]) == NO_ROWS
    assert not archives[0].exists()


def test_delete_a_pending_batch(api: ApiUser, services: Services) -> None:
    batch = submit(api.client, GET_LISTS * 30)
    assert batch_rows(services, batch["id"])["batch_operations"] == 30
    assert api.client.delete(f"/3.0/batches/{batch['id']}").status_code == 204
    assert batch_rows(services, batch["id"]) == NO_ROWS
    # The work a lost message would have done finds nothing and does nothing.
    engine = services.engine
    assert engine.preprocess(batch["id"]) == []
    assert engine.work(batch["id"]) == []
    assert engine.finalize(batch["id"]) == []
    assert batch_rows(services, batch["id"]) == NO_ROWS


def test_delete_during_a_long_batch_stops_it(
    batch_api: ApiUser,
    runtime: EmbeddedRuntime,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The DELETE lands while chunks run; nothing the batch does after it survives."""
    client = batch_api.client
    list_id = create_list(client)
    chunk_done = threading.Event()
    deleted = threading.Event()
    after_chunk: Callable[[BatchEngine, str, int], list[FollowUp]] = BatchEngine._after_chunk

    def gated(self: BatchEngine, batch_id: str, workers: int = 1) -> list[FollowUp]:
        # Between chunks, outside any transaction: hold the workers until the DELETE is
        # answered, so the batch is caught in the middle whatever the machine's speed.
        chunk_done.set()
        deleted.wait(timeout=30)
        return after_chunk(self, batch_id, workers)

    monkeypatch.setattr(BatchEngine, "_after_chunk", gated)
    operations = member_posts(list_id, 300)
    batch = submit(client, operations)
    assert chunk_done.wait(timeout=30)

    response = client.delete(f"/3.0/batches/{batch['id']}")
    assert response.status_code == 204
    members_at_delete = len(list_members(client, list_id))
    deleted.set()
    runtime.join()

    assert 0 < members_at_delete < len(operations)
    assert len(list_members(client, list_id)) == members_at_delete
    assert batch_rows(services, batch["id"]) == NO_ROWS
    assert orphan_rows(services) == {k: 0 for k in NO_ROWS if k != "batches"}
    assert_problem(client.get(f"/3.0/batches/{batch['id']}"), 404)
    assert list(Path(services.settings.blob_dir).rglob("*.tar.gz")) == []


def test_an_upload_in_progress_is_invisible(api: ApiUser, services: Services) -> None:
    """Until its whole body is stored a batch does not exist for clients."""
    with services.database.write() as conn:
        owner = account_pk(services, api.account_id)
        store = services.batch_store
        batch_id = store.create_ingesting(conn, owner, "http://testserver/3.0")
        store.insert_operations(conn, batch_id, 0, [Operation("GET", "lists", {}, None, None)])
    assert api.client.get("/3.0/batches").json()["total_items"] == 0
    assert_problem(api.client.get(f"/3.0/batches/{batch_id}"), 404)
    assert_problem(api.client.delete(f"/3.0/batches/{batch_id}"), 404)
    with services.database.read() as conn:
        assert services.batch_store.count_unstarted(conn, owner) == 0
    assert services.engine.sweep(idle_seconds=0) == []
    assert batch_rows(services, batch_id)["batch_operations"] == 1
