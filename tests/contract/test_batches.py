"""The batch life cycle, the same on every stack: submit, run, archive, page, delete, recover."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from conveyor.domain.steps import Step
from conveyor.http.app import create_app
from conveyor.storage.tables import batch_chunks, batch_operations, batch_results, batches
from tests.contract.stack import Drop, Hold, Stack
from tests.contract.support import (
    by_operation_id,
    create_list,
    fetch_results,
    get_batch,
    list_members,
    member_posts,
    response_of,
    submit,
)


def batch_row_counts(stack: Stack, batch_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    with stack.services.database.read() as conn:
        for table in (batches, batch_operations, batch_chunks, batch_results):
            column = table.c.id if table is batches else table.c.batch_id
            counts[table.name] = conn.execute(
                select(func.count()).select_from(table).where(column == batch_id)
            ).scalar_one()
    return counts


def test_batch_runs_to_a_finished_downloadable_archive(stack: Stack) -> None:
    with stack.user() as user:
        client = user.client
        list_id = create_list(client)
        operations = member_posts(list_id, 45)
        operations += [
            {
                "method": "POST",
                "path": f"lists/{list_id}/members",
                "operation_id": "bad-email",
                "body": json.dumps({"email_address": "nope", "status": "subscribed"}),
            },
            {"method": "GET", "path": "lists/0000000000", "operation_id": "missing"},
            {"method": "GET", "path": f"lists/{list_id}"},
        ]
        batch = submit(client, operations)
        assert batch["response_body_url"] == "" and batch["completed_at"] == ""

        stack.join()

        done = get_batch(client, batch["id"])
        assert done["status"] == "finished"
        assert done["completed_at"] >= done["submitted_at"]
        assert done["total_operations"] == len(operations)
        assert done["errored_operations"] == 2
        assert done["response_body_url"].startswith(
            f"http://testserver/3.0/batches/{batch['id']}-response.tar.gz?"
        )
        results = fetch_results(client, done)  # counters = archive contents
        grouped = by_operation_id(results)
        expected: dict[str | None, int] = {f"add-{i}": 1 for i in range(45)}
        expected |= {"bad-email": 1, "missing": 1, None: 1}
        assert {key: len(value) for key, value in grouped.items()} == expected
        assert all(grouped[f"add-{i}"][0]["status_code"] == 200 for i in range(45))
        assert grouped["bad-email"][0]["status_code"] == 400
        assert grouped["missing"][0]["status_code"] == 404
        assert response_of(grouped[None][0])["id"] == list_id
        assert len(list_members(client, list_id)) == 45

        # The archive lives in the configured store (seen from outside Conveyor), only there.
        assert stack.stored_blobs() == [f"archives/{batch['id']}-response.tar.gz"]
        listed = client.get("/3.0/batches").json()
        assert [b["id"] for b in listed["batches"]] == [batch["id"]]
        assert listed["batches"][0]["status"] == "finished"


def test_get_without_count_pages_through_the_collection(stack: Stack) -> None:
    with stack.user() as user:
        client = user.client
        list_id = create_list(client)
        submit(client, member_posts(list_id, 35))
        stack.join()
        members = f"lists/{list_id}/members"
        batch = submit(
            client,
            [
                {"method": "GET", "path": members, "operation_id": "all"},
                {"method": "GET", "path": members, "params": {"count": 5}, "operation_id": "five"},
            ],
        )
        stack.join()

        done = get_batch(client, batch["id"])
        # page_size is 10: "all" became 4 pages, each page an operation of its own.
        assert done["status"] == "finished"
        assert done["total_operations"] == 2 + 3
        grouped = by_operation_id(fetch_results(client, done))
        pages = [response_of(result) for result in grouped["all"]]
        assert [len(page["members"]) for page in pages] == [10, 10, 10, 5]
        emails = sorted(m["email_address"] for page in pages for m in page["members"])
        assert emails == sorted(f"user{i}@example.org" for i in range(35))
        assert [len(response_of(r)["members"]) for r in grouped["five"]] == [5]


def test_delete_mid_run_stops_the_batch_and_removes_everything(stack: Stack) -> None:
    # The first two work messages (preprocess sends two) run a chunk each; the work they
    # send next is held until the DELETE has been answered.
    hold = Hold("work", spare=2)
    stack.add_middleware(hold)
    with stack.user() as user:
        client = user.client
        list_id = create_list(client)
        operations = member_posts(list_id, 300)
        batch = submit(client, operations)
        try:
            assert hold.reached.wait(timeout=30), "no chunk finished"
            running = get_batch(client, batch["id"])
            assert running["status"] == "started"
            assert 0 < running["finished_operations"] < len(operations)
            response = client.delete(f"/3.0/batches/{batch['id']}")
            assert response.status_code == 204, response.text
            members_at_delete = len(list_members(client, list_id))
        finally:
            hold.released.set()
        stack.join()

        assert 0 < members_at_delete < len(operations)
        assert len(list_members(client, list_id)) == members_at_delete
        assert client.get(f"/3.0/batches/{batch['id']}").status_code == 404
        assert client.get("/3.0/batches").json()["total_items"] == 0
        assert batch_row_counts(stack, batch["id"]) == dict.fromkeys(
            ["batches", "batch_operations", "batch_chunks", "batch_results"], 0
        )
        assert stack.stored_blobs() == []


def test_delete_finished_batch_removes_its_archive(stack: Stack) -> None:
    with stack.user() as user:
        client = user.client
        batch = submit(client, [{"method": "GET", "path": "lists"}] * 3)
        stack.join()
        url = get_batch(client, batch["id"])["response_body_url"]
        assert stack.stored_blobs() == [f"archives/{batch['id']}-response.tar.gz"]
        assert client.delete(f"/3.0/batches/{batch['id']}").status_code == 204
        assert stack.stored_blobs() == []
        assert client.get(url, auth=None).status_code == 404


@pytest.mark.parametrize(
    ("step", "spare", "stalled_status"),
    [
        ("preprocess", 0, "pending"),  # lost right after ingest
        # Preprocess runs the first chunk itself and sends one more work message; that one
        # runs (spare=1), every later one is lost: two chunks done, the batch stalls.
        ("work", 1, "started"),  # lost between chunks
    ],
)
def test_a_lost_message_is_sent_again_by_the_reconciler(
    stack: Stack, step: str, spare: int, stalled_status: str
) -> None:
    drop = Drop(step, spare=spare)
    stack.add_middleware(drop)
    with stack.user() as user:
        client = user.client
        list_id = create_list(client)
        operations = member_posts(list_id, 60)
        batch = submit(client, operations)
        stack.join()

        stalled = get_batch(client, batch["id"])
        assert drop.dropped >= 1
        assert stalled["status"] == stalled_status, stalled
        if step == "work":
            chunk_size = stack.settings.batches.chunk_size
            assert stalled["finished_operations"] == 2 * chunk_size

        drop.active = False
        stack.scheduler().tick(idle_seconds=0)
        stack.join()

        done = get_batch(client, batch["id"])
        assert done["status"] == "finished", done
        grouped = by_operation_id(fetch_results(client, done))
        assert {key: len(value) for key, value in grouped.items()} == {
            f"add-{i}": 1 for i in range(60)
        }
        assert len(list_members(client, list_id)) == 60


def test_a_batch_left_finalizing_is_finalized_by_the_reconciler(stack: Stack) -> None:
    """The finalize step normally runs on in the worker that ran the last chunk; if that
    worker dies there, or the message is lost, the sweep finds the batch finalizing."""
    # An app that sends no messages: this test plays the workers' part by hand.
    with stack.user(create_app(stack.services)) as user:
        client = user.client
        list_id = create_list(client)
        engine = stack.services.engine
        batch = submit(client, member_posts(list_id, 60))
        pending = engine.preprocess(batch["id"])
        while pending:
            follow_up = pending.pop()
            if follow_up.step == Step.WORK:
                pending.extend(engine.work(follow_up.target_id))
            # FINALIZE follow-ups are dropped: the message that never arrives.
        assert get_batch(client, batch["id"])["status"] == "finalizing"

        stack.scheduler().tick(idle_seconds=0)
        stack.join()

        done = get_batch(client, batch["id"])
        assert done["status"] == "finished", done
        grouped = by_operation_id(fetch_results(client, done))
        assert {key: len(value) for key, value in grouped.items()} == {
            f"add-{i}": 1 for i in range(60)
        }
