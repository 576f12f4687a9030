"""POST /3.0/batches/{id}/cancel: what has not run never runs; the batch still ends
`finished`, with `canceled_at`, an archive of exactly what ran, and its webhooks."""

from __future__ import annotations

import threading
import urllib.parse
from typing import Any

import pytest
from sqlalchemy import insert, select

from conveyor.composition import Services
from conveyor.domain.states import ChunkState
from conveyor.domain.steps import FollowUp, Step
from conveyor.runtime.embedded import EmbeddedRuntime
from conveyor.storage.batches import BatchNotRunning
from conveyor.storage.tables import batch_chunks, batches
from tests.batches.steer_support import all_operations, ndjson_lines
from tests.batches.support import (
    ISO_SECONDS,
    assert_problem,
    claim,
    create_list,
    drive,
    fetch_archive,
    list_members,
    member_posts,
    run_claimed_group,
    submit,
)
from tests.batches.test_batch_operations_view import mixed_operations
from tests.conftest import ApiUser
from tests.webhooks.receiver import running_receiver


def cancel(api: ApiUser, batch_id: str) -> dict[str, Any]:
    response = api.client.post(f"/3.0/batches/{batch_id}/cancel")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def read(api: ApiUser, batch_id: str) -> dict[str, Any]:
    response = api.client.get(f"/3.0/batches/{batch_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def finalize(services: Services, batch_id: str) -> None:
    drive(services, batch_id, first=[FollowUp(Step.FINALIZE, batch_id)])


def test_a_pending_batch_canceled_runs_nothing_and_still_finishes(
    api: ApiUser, services: Services
) -> None:
    list_id = create_list(api.client)
    batch = submit(api.client, member_posts(list_id, 30))
    canceled = cancel(api, batch["id"])
    assert canceled["status"] == "finalizing"
    assert ISO_SECONDS.fullmatch(canceled["canceled_at"]), canceled
    assert set(canceled) - set(batch) == {"canceled_at"}
    # The preprocess message that was already on its way finds nothing to do ...
    drive(services, batch["id"])
    assert read(api, batch["id"])["status"] == "finalizing"
    # ... and the finalize the cancel sent writes the (empty) archive.
    finalize(services, batch["id"])
    done = read(api, batch["id"])
    assert done["status"] == "finished"
    assert (done["total_operations"], done["finished_operations"]) == (30, 0)
    assert done["canceled_at"] == canceled["canceled_at"]
    assert fetch_archive(api.client, done).results == []
    assert list_members(api.client, list_id) == []
    pending = all_operations(api.client, batch["id"], status="pending")
    assert len(pending) == 30  # never run, and never will


def test_a_cancel_mid_run_keeps_exactly_what_ran(api: ApiUser, services: Services) -> None:
    client = api.client
    list_id = create_list(client)
    batch = submit(client, mixed_operations(list_id, 40))
    services.engine.preprocess(batch["id"])
    first, second = claim(services, batch["id"]), claim(services, batch["id"])
    assert first is not None and second is not None
    assert run_claimed_group(services, first, 0, 7)
    assert run_claimed_group(services, second, 20, 27)

    canceled = cancel(api, batch["id"])
    assert canceled["finished_operations"] == 14
    # Holders of claims taken before the cancel commit nothing more.
    assert not run_claimed_group(services, first, 7, 14)
    assert not run_claimed_group(services, second, 27, 34)
    with services.database.read() as conn:
        states = conn.execute(
            select(batch_chunks.c.state, batch_chunks.c.next_seq)
            .where(batch_chunks.c.batch_id == batch["id"])
            .order_by(batch_chunks.c.seq)
        ).all()
    assert [tuple(row) for row in states] == [("done", 7), ("done", 27)]
    finalize(services, batch["id"])

    done = read(api, batch["id"])
    archive = fetch_archive(client, done)
    assert done["status"] == "finished"
    assert len(archive.results) == done["finished_operations"] == 14
    assert done["errored_operations"] == 2
    ran = [f"user-{i}" for i in [*range(0, 7), *range(20, 27)]]
    assert [record["operation_id"] for record in archive.results] == ran
    # The members prove it: the twelve valid addresses of what ran, nothing else.
    emails = sorted(member["email_address"] for member in list_members(client, list_id))
    assert emails == sorted(
        f"user{i}@example.org" for i in [0, 1, 2, 4, 5, 6, 20, 21, 22, 24, 25, 26]
    )
    assert [line["operation_id"] for line in ndjson_lines(client, batch["id"])] == ran
    assert len(all_operations(client, batch["id"], status="pending")) == 26


def test_a_group_running_when_the_cancel_comes_commits_whole_before_it(
    api: ApiUser, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group holds its chunk (PostgreSQL: the row lock; SQLite: the write lock) from its
    first statement: the cancel waits for its commit, so the group counts, all of it."""
    client = api.client
    list_id = create_list(client)
    batch = submit(client, member_posts(list_id, 40))
    services.engine.preprocess(batch["id"])
    held = claim(services, batch["id"])
    assert held is not None
    inside, release = threading.Event(), threading.Event()
    record_results = services.batch_store.record_results

    def slow_record(*args: Any, **kwargs: Any) -> None:
        inside.set()
        assert release.wait(10)
        record_results(*args, **kwargs)

    monkeypatch.setattr(services.batch_store, "record_results", slow_record)
    group = threading.Thread(target=run_claimed_group, args=(services, held, 0, 7))
    group.start()
    assert inside.wait(10)
    answers: list[dict[str, Any]] = []
    canceling = threading.Thread(target=lambda: answers.append(cancel(api, batch["id"])))
    canceling.start()
    canceling.join(0.3)
    assert canceling.is_alive(), "the cancel did not wait for the running group"
    release.set()
    group.join(10)
    canceling.join(10)
    assert answers[0]["finished_operations"] == 7
    finalize(services, batch["id"])
    done = read(api, batch["id"])
    assert len(fetch_archive(client, done).results) == done["finished_operations"] == 7
    assert len(list_members(client, list_id)) == 7


def test_a_group_whose_batch_stopped_running_rolls_back_whole(
    api: ApiUser, services: Services
) -> None:
    """The counters move with a compare-and-set on `started`: a group that missed the cancel
    (its chunk planned after it, on PostgreSQL) commits none of its effects."""
    list_id = create_list(api.client)
    batch = submit(api.client, member_posts(list_id, 40))
    services.engine.preprocess(batch["id"])
    held = claim(services, batch["id"])
    assert held is not None
    with services.database.write() as conn:
        conn.execute(
            batches.update().where(batches.c.id == batch["id"]).values(status="finalizing")
        )
    with pytest.raises(BatchNotRunning):
        run_claimed_group(services, held, 0, 7)
    assert list_members(api.client, list_id) == []


def test_chunks_planned_after_a_cancel_never_run(api: ApiUser, services: Services) -> None:
    list_id = create_list(api.client)
    batch = submit(api.client, member_posts(list_id, 40))
    cancel(api, batch["id"])
    with services.database.write() as conn:
        # What a preprocess that read `preprocessing` before the cancel committed leaves.
        conn.execute(
            insert(batch_chunks),
            [
                {
                    "batch_id": batch["id"],
                    "seq": seq,
                    "start_seq": seq * 20,
                    "stop_seq": seq * 20 + 20,
                    "next_seq": seq * 20,
                    "state": ChunkState.QUEUED.value,
                    "lease_until": 0.0,
                    "attempts": 0,
                }
                for seq in (0, 1)
            ],
        )
    assert services.engine.work(batch["id"]) == []
    assert services.engine.sweep(idle_seconds=-1) == [FollowUp(Step.FINALIZE, batch["id"])]
    finalize(services, batch["id"])
    done = read(api, batch["id"])
    assert (done["status"], done["finished_operations"]) == ("finished", 0)
    assert list_members(api.client, list_id) == []


def test_cancel_again_or_too_late(api: ApiUser, services: Services) -> None:
    batch = submit(api.client, [{"method": "GET", "path": "/ping"}])
    first = cancel(api, batch["id"])
    assert cancel(api, batch["id"]) == first  # already canceled: the same answer
    finalize(services, batch["id"])
    assert cancel(api, batch["id"])["canceled_at"] == first["canceled_at"]

    ran = submit(api.client, [{"method": "GET", "path": "/ping"}])
    drive(services, ran["id"])
    problem = assert_problem(
        api.client.post(f"/3.0/batches/{ran['id']}/cancel"), 400, "Invalid Action"
    )
    assert "nothing left to cancel" in problem["detail"]
    assert "canceled_at" not in read(api, ran["id"])


def test_delete_keeps_its_meaning_on_a_canceled_batch(api: ApiUser, services: Services) -> None:
    batch = submit(api.client, [{"method": "GET", "path": "/ping"}])
    cancel(api, batch["id"])
    finalize(services, batch["id"])
    assert api.client.delete(f"/3.0/batches/{batch['id']}").status_code == 204
    assert_problem(api.client.get(f"/3.0/batches/{batch['id']}"), 404)


def test_a_canceled_batch_fires_its_webhooks(
    api: ApiUser, runtime: EmbeddedRuntime, services: Services
) -> None:
    with running_receiver() as receiver:
        hook = api.client.post("/3.0/batch-webhooks", json={"url": receiver.url})
        assert hook.status_code == 200, hook.text
        # This app sends no message: the batch waits, and is canceled before it starts.
        batch = submit(api.client, [{"method": "GET", "path": "/ping"}] * 5)
        cancel(api, batch["id"])
        runtime.dispatcher.send([FollowUp(Step.FINALIZE, batch["id"])])
        runtime.join()
        (post,) = receiver.wait_for_posts(1)
    form = urllib.parse.parse_qs(post.body.decode())
    assert form["data[id]"] == [batch["id"]]
    assert form["data[status]"] == ["finished"]
    assert form["data[finished_operations]"] == ["0"]
    assert form["data[total_operations]"] == ["5"]
