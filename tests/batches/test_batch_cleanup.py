"""A crash between a batch's status change and the removal of its rows leaves a marker the
sweep finds; the rows never outlive the batch unnoticed."""

from __future__ import annotations

from conveyor.composition import Services
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


def test_a_finished_batch_keeps_its_rows_until_it_is_deleted(
    api: ApiUser, services: Services
) -> None:
    list_id = create_list(api.client)
    batch = submit(api.client, member_posts(list_id, 30))
    drive(services, batch["id"])
    assert get_batch(api.client, batch["id"])["status"] == "finished"
    rows = batch_rows(services, batch["id"])
    # The operations view, the NDJSON results and a retry read them until the batch goes.
    assert rows["batch_operations"] == 30 and rows["batch_results"] == 30
    assert services.engine.finish_cleanups(idle_seconds=0) == 0
    assert batch_rows(services, batch["id"]) == rows
    assert api.client.delete(f"/3.0/batches/{batch['id']}").status_code == 204
    assert batch_rows(services, batch["id"]) == NO_ROWS


def test_rows_of_a_batch_finished_before_rows_were_kept_are_still_dropped(
    api: ApiUser, services: Services
) -> None:
    """A batch that finished under the old life cycle, its rows half dropped when the server
    was upgraded: the sweep finishes the drop, and the views say where its results are."""
    list_id = create_list(api.client)
    batch = submit(api.client, member_posts(list_id, 30))
    drive(services, batch["id"])
    # What migration 0007 finds: finished, marked, rows still there.
    with services.database.write() as conn:
        conn.execute(
            batches.update()
            .where(batches.c.id == batch["id"])
            .values(rows_pending=True, rows_kept=False)
        )
    assert services.engine.finish_cleanups(idle_seconds=0) == 1
    assert services.engine.finish_cleanups(idle_seconds=0) == 0
    rows = batch_rows(services, batch["id"])
    assert rows["batch_operations"] == 0 and rows["batch_results"] == 0
    # The batch itself and its archive are untouched.
    assert fetch_archive(api.client, get_batch(api.client, batch["id"])).results
    gone = api.client.get(f"/3.0/batches/{batch['id']}/operations")
    assert gone.status_code == 404
    assert "archive" in gone.json()["detail"]
