"""A crash between a batch's status change and the removal of its rows leaves a marker the
sweep finds; the rows never outlive the batch unnoticed."""

from __future__ import annotations

from conveyor.composition import Services
from conveyor.domain.operations import Operation
from conveyor.storage.tables import batches
from tests.batches.support import (
    NO_ROWS,
    batch_rows,
    create_list,
    drive,
    fetch_archive,
    get_batch,
    member_posts,
    submit,
)
from tests.conftest import ApiUser


def test_a_delete_interrupted_after_hiding_the_batch_is_finished_by_the_sweep(
    api: ApiUser, services: Services
) -> None:
    list_id = create_list(api.client)
    batch = submit(api.client, member_posts(list_id, 30))
    drive(services, batch["id"])
    # The first step of a DELETE, then the process "dies".
    with services.database.write() as conn:
        key = services.batch_store.mark_deleting(conn, batch["id"])
    assert key is not None
    assert api.client.get(f"/3.0/batches/{batch['id']}").status_code == 404
    assert batch_rows(services, batch["id"])["batches"] == 1

    assert services.engine.finish_cleanups(idle_seconds=0) == 1
    assert batch_rows(services, batch["id"]) == NO_ROWS


def test_rows_left_by_a_finalize_interrupted_after_finishing_are_dropped(
    api: ApiUser, services: Services
) -> None:
    list_id = create_list(api.client)
    batch = submit(api.client, member_posts(list_id, 30))
    drive(services, batch["id"])
    finished = get_batch(api.client, batch["id"])
    assert finished["status"] == "finished"
    # As if the process died right after `finish` committed: rows still there, marker set.
    leftovers = [Operation("GET", "/ping", {}, None, f"left-{i}") for i in range(5)]
    with services.database.write() as conn:
        services.batch_store.insert_operations(conn, batch["id"], 0, leftovers)
        conn.execute(batches.update().where(batches.c.id == batch["id"]).values(rows_pending=True))
    assert batch_rows(services, batch["id"])["batch_operations"] == 5
    assert services.engine.finish_cleanups(idle_seconds=0) == 1
    assert services.engine.finish_cleanups(idle_seconds=0) == 0
    rows = batch_rows(services, batch["id"])
    assert rows["batch_operations"] == 0 and rows["batch_results"] == 0
    # The batch itself and its archive are untouched.
    assert fetch_archive(api.client, get_batch(api.client, batch["id"])).results
