"""The batch extensions on every stack, scaled out too: progress events, cancel, idempotent
submit and results served by an API process other than the one that took the batch, while
workers elsewhere run it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tests.batches.steer_support import read_events
from tests.contract.stack import Hold, Stack
from tests.contract.support import (
    by_operation_id,
    create_list,
    download,
    fetch_results,
    get_batch,
    list_members,
    member_posts,
    read_archive,
    submit,
)


@contextmanager
def client_of(app: Starlette, key: str) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as client:
        client.auth = httpx2.BasicAuth("anyone", key)
        yield client


def test_progress_events_from_another_api_process(stack: Stack) -> None:
    first, second = stack.api_instances(2)
    with stack.user(first) as user, client_of(second, user.key) as watcher:
        operations = [
            {"method": "GET", "path": "/ping", "operation_id": f"p{i}"} for i in range(600)
        ]
        batch = submit(user.client, operations)
        # Read whole: the stream ends when the batch has finished.
        response = watcher.get(f"/3.0/batches/{batch['id']}/events")
        assert response.status_code == 200, response.text
        events = read_events(response)
        stack.join()
    assert [event.name for event in events][-1] == "finished"
    assert {event.name for event in events[:-1]} <= {"progress"}
    assert events[-1].data["finished_operations"] == 600
    assert events[-1].data["response_body_url"]
    counts = [event.data["finished_operations"] for event in events]
    assert counts == sorted(counts)


def test_cancel_mid_run_keeps_exactly_what_ran(stack: Stack) -> None:
    # Two chunks run; the work they send next is held until the cancel has been answered.
    hold = Hold("work", spare=2)
    stack.add_middleware(hold)
    first, second = stack.api_instances(2)
    with stack.user(first) as user, client_of(second, user.key) as other:
        list_id = create_list(user.client)
        batch = submit(user.client, member_posts(list_id, 300))
        try:
            assert hold.reached.wait(timeout=30), "no chunk finished"
            response = other.post(f"/3.0/batches/{batch['id']}/cancel")
            assert response.status_code == 200, response.text
            canceled = response.json()
        finally:
            hold.released.set()
        stack.join()
        done = get_batch(user.client, batch["id"])
        assert done["status"] == "finished"
        assert done["canceled_at"] == canceled["canceled_at"]
        archive = download(user.client, done["response_body_url"])
        assert archive.status_code == 200
        results = [result for file in read_archive(archive.content) for result in file]
        assert 0 < len(results) == done["finished_operations"] < done["total_operations"] == 300
        assert done["finished_operations"] >= canceled["finished_operations"]
        # The members prove it: exactly the operations in the archive ran.
        members = {member["email_address"] for member in list_members(user.client, list_id)}
        ran = {
            json.loads(result["response"])["email_address"]
            for result in results
            if result["status_code"] == 200
        }
        assert members == ran


def test_one_idempotency_key_makes_one_batch_across_api_processes(stack: Stack) -> None:
    apps = stack.api_instances(2, max_connections=32)
    body = json.dumps({"operations": member_posts("none", 40)}).encode()
    with stack.user(apps[0]) as user, client_of(apps[1], user.key) as other:
        clients = [user.client, other] * 5
        start = threading.Barrier(len(clients))

        def send(client: TestClient) -> httpx2.Response:
            start.wait()
            return client.post("/3.0/batches", content=body, headers={"Idempotency-Key": "one-key"})

        with ThreadPoolExecutor(len(clients)) as pool:
            answers = list(pool.map(send, clients))
        stack.join()
        assert {answer.status_code for answer in answers} == {200}, [a.text for a in answers]
        assert len({answer.json()["id"] for answer in answers}) == 1
        assert user.client.get("/3.0/batches").json()["total_items"] == 1


def test_results_and_retry_from_another_api_process(stack: Stack) -> None:
    first, second = stack.api_instances(2)
    with stack.user(first) as user, client_of(second, user.key) as other:
        operations: list[dict[str, Any]] = [
            {"method": "GET", "path": "/ping", "operation_id": "ok"},
            {"method": "GET", "path": "/lists/nope", "operation_id": "missing"},
        ]
        batch = submit(user.client, operations)
        stack.join()
        lines = other.get(f"/3.0/batches/{batch['id']}/results.ndjson").text.splitlines()
        assert [json.loads(line)["operation_id"] for line in lines] == ["ok", "missing"]
        failed = other.get(f"/3.0/batches/{batch['id']}/operations", params={"status": "failed"})
        assert [item["operation_id"] for item in failed.json()["operations"]] == ["missing"]
        again = other.post(f"/3.0/batches/{batch['id']}/retry")
        assert again.status_code == 200, again.text
        stack.join()
        done = get_batch(user.client, again.json()["id"])
        assert (done["status"], done["retry_of"], done["total_operations"]) == (
            "finished",
            batch["id"],
            1,
        )
        assert list(by_operation_id(fetch_results(user.client, done))) == ["missing"]
