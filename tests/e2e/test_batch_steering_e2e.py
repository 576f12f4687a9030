"""The batch extensions against a real `conveyor serve`, over HTTP only: a 30,000-operation
batch seen while it runs, its failures filtered, streamed and retried, its progress followed;
a 100,000-operation batch canceled; one idempotency key under twenty parallel submits; which
streams hold a connection slot."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import httpx
from httpx_sse import connect_sse

from tests.e2e.batch_support import (
    api_client,
    create_list,
    download_archive,
    operation_template,
    operations_body,
    read_status,
    wait_finished,
    wait_until,
)
from tests.e2e.conftest import StartServer

TOTAL = 30_000
INVALID_EVERY = 30  # 1,000 invalid addresses among the 30,000
JSON_HEADERS = {"Content-Type": "application/json"}


def mixed_body(list_id: str) -> bytes:
    operations = []
    for i in range(TOTAL):
        address = f"bad{i}" if i % INVALID_EVERY == 7 else f"user{i}@example.org"
        operations.append(
            {
                "method": "POST",
                "path": f"lists/{list_id}/members",
                "operation_id": f"op-{i}",
                "body": json.dumps({"email_address": address, "status": "subscribed"}),
            }
        )
    return json.dumps({"operations": operations}).encode()


def view(api: httpx.Client, batch_id: str, **params: Any) -> dict[str, Any]:
    response = api.get(f"batches/{batch_id}/operations", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ndjson(api: httpx.Client, batch_id: str, **params: Any) -> Iterator[dict[str, Any]]:
    with api.stream("GET", f"batches/{batch_id}/results.ndjson", params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        for line in response.iter_lines():
            yield json.loads(line)


class EventReader(threading.Thread):
    """Reads a batch's progress events until the server ends the stream."""

    def __init__(self, api: httpx.Client, batch_id: str) -> None:
        super().__init__(daemon=True)
        self.api, self.batch_id = api, batch_id
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.opened = threading.Event()
        self.ended = False

    def run(self) -> None:
        # The client is this thread's own: closed however the stream ends, so a failed test
        # leaves no socket behind for a later test's unraisable-warning check to find.
        with self.api, connect_sse(self.api, "GET", f"batches/{self.batch_id}/events") as source:
            assert source.response.status_code == 200, source.response.read()
            self.opened.set()
            for event in source.iter_sse():
                self.events.append((event.event, event.json()))
        self.ended = True


def test_a_30000_operation_batch_seen_while_it_runs_and_steered_after(
    start_server: StartServer,
) -> None:
    # Small groups and one worker thread keep the batch running long enough to be watched,
    # however fast this machine runs it.
    server = start_server(
        env={
            "CONVEYOR_MAX_CONCURRENT_REQUESTS": "3",
            "CONVEYOR_MAX_EVENT_STREAMS": "1",
            "CONVEYOR_BATCH_GROUP_SIZE": "20",
            "CONVEYOR_BATCH_WORKER_THREADS": "1",
        }
    )
    api = api_client(server, timeout=120)
    list_id = create_list(api)
    submitted = api.post("batches", content=mixed_body(list_id), headers=JSON_HEADERS)
    assert submitted.status_code == 200, submitted.text
    batch_id = submitted.json()["id"]
    reader = EventReader(api_client(server, timeout=300), batch_id)
    reader.start()
    assert reader.opened.wait(30)
    # One stream per account here: a second is refused while the first is open, and took no
    # request slot meanwhile. Only a first stream already ended (the batch done) frees it.
    second = api.get(f"batches/{batch_id}/events")
    if second.status_code != 429:
        reader.join(30)
        assert reader.ended, second.text

    # While it runs, the view already holds results and pending operations side by side.
    seen_running = None
    while seen_running is None:
        batch = read_status(api, batch_id)
        assert batch["status"] != "finished", "finished before a result was seen running"
        if batch["status"] == "started" and batch["finished_operations"] > 0:
            succeeded = view(api, batch_id, status="succeeded", count=3)
            pending = view(api, batch_id, status="pending", count=3)
            failed = view(api, batch_id, status="failed", count=3)
            if succeeded["total_items"] and pending["total_items"]:
                assert all(i["status_code"] == 200 for i in succeeded["operations"])
                assert all(i["status_code"] is None for i in pending["operations"])
                # Each status is read at its own moment of a running batch; the whole view
                # (one read) always holds every operation once.
                assert view(api, batch_id, count=1)["total_items"] == TOTAL
                assert failed["total_items"] <= TOTAL // INVALID_EVERY
                seen_running = succeeded["total_items"]
    print(f"seen while running: {seen_running:,} of {TOTAL:,} succeeded")

    done = wait_finished(lambda: read_status(api, batch_id), timeout=300)
    assert done["errored_operations"] == 1_000
    failed = view(api, batch_id, status="failed", count=1000)
    assert failed["total_items"] == 1_000 and len(failed["operations"]) == 1_000
    assert {item["status_code"] for item in failed["operations"]} == {400}
    assert [item["seq"] for item in failed["operations"]] == list(range(7, TOTAL, INVALID_EVERY))

    # NDJSON equals the archive, record for record.
    archive = download_archive(done)
    lines = list(ndjson(api, batch_id))
    assert len(lines) == len(archive) == TOTAL
    for line, entry in zip(lines, archive, strict=True):
        assert line == {
            "operation_id": entry.operation_id,
            "status_code": entry.status_code,
            "response": entry.body,
        }
    assert sum(1 for _ in ndjson(api, batch_id, status="failed")) == 1_000

    # The progress stream said so as it went, then `finished`, then ended.
    reader.join(60)
    assert reader.ended
    names = [name for name, _ in reader.events]
    assert names[-1] == "finished" and names.count("finished") == 1
    assert len(names) >= 2 and set(names[:-1]) == {"progress"}
    last = reader.events[-1][1]
    assert last["finished_operations"] == TOTAL and last["eta_seconds"] == 0.0
    assert any(data["ops_per_second"] > 0 for name, data in reader.events if name == "progress")

    # NDJSON streams hold a request slot until they end: three unread ones take all three.
    with ExitStack() as streams:
        for _ in range(3):
            held = streams.enter_context(api.stream("GET", f"batches/{batch_id}/results.ndjson"))
            assert held.status_code == 200
        assert api.get("ping").status_code == 429
    # Closed by the client: the server finds out on its next write and frees the slots.
    deadline = time.monotonic() + 30
    while api.get("ping").status_code == 429:
        assert time.monotonic() < deadline, "the slots of closed streams were never freed"
        time.sleep(0.05)

    # Retry: a batch of exactly the thousand failures.
    retried = api.post(f"batches/{batch_id}/retry")
    assert retried.status_code == 200, retried.text
    again = retried.json()
    assert (again["retry_of"], again["total_operations"]) == (batch_id, 1_000)
    again_done = wait_finished(lambda: read_status(api, again["id"]), timeout=120)
    assert again_done["errored_operations"] == 1_000
    ids = [line["operation_id"] for line in ndjson(api, again["id"])]
    assert ids == [f"op-{i}" for i in range(7, TOTAL, INVALID_EVERY)]
    api.close()


def test_cancel_of_a_100000_operation_batch_never_runs_the_rest(
    start_server: StartServer,
) -> None:
    server = start_server()
    api = api_client(server, timeout=120)
    list_id = create_list(api)
    template = operation_template(
        {
            "method": "POST",
            "path": f"lists/{list_id}/members",
            "operation_id": "c-IDX",
            "body": json.dumps({"email_address": "cIDX@example.org", "status": "subscribed"}),
        }
    )
    body = operations_body(template, 100_000)
    submitted = api.post("batches", content=body, headers=JSON_HEADERS)
    assert submitted.status_code == 200, submitted.text
    batch_id = submitted.json()["id"]
    wait_until(
        lambda: read_status(api, batch_id),
        lambda b: b["finished_operations"] >= 2_000,
        timeout=120,
    )
    canceled = api.post(f"batches/{batch_id}/cancel")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["canceled_at"]
    done = wait_finished(lambda: read_status(api, batch_id), timeout=120)
    archive = download_archive(done)
    finished = done["finished_operations"]
    assert len(archive) == finished
    assert 2_000 <= finished < 100_000
    print(f"canceled after {finished:,} of 100,000 operations")

    # The members prove it: exactly the operations in the archive ran, and after another
    # batch has gone through the same workers, still nothing more has.
    def member_count() -> int:
        stats = api.get(f"lists/{list_id}").json()["stats"]
        return int(stats["member_count"])

    assert member_count() == finished
    later = api.post("batches", json={"operations": [{"method": "GET", "path": "ping"}] * 50})
    wait_finished(lambda: read_status(api, later.json()["id"]), timeout=60)
    assert member_count() == finished
    assert view(api, batch_id, status="pending")["total_items"] == 100_000 - finished
    api.close()


def test_twenty_parallel_submits_under_one_key_make_one_batch(start_server: StartServer) -> None:
    server = start_server(env={"CONVEYOR_MAX_CONCURRENT_REQUESTS": "32"})
    body = json.dumps({"operations": [{"method": "GET", "path": "ping"}] * 2_000}).encode()
    key = uuid.uuid4().hex
    start = threading.Barrier(20)

    def submit(_: int) -> httpx.Response:
        with api_client(server) as api:
            start.wait()
            headers = {**JSON_HEADERS, "Idempotency-Key": key}
            return api.post("batches", content=body, headers=headers)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(submit, range(20)))
    assert [answer.status_code for answer in answers] == [200] * 20
    assert len({answer.json()["id"] for answer in answers}) == 1
    replays = [answer.headers.get("idempotent-replayed") for answer in answers]
    assert replays.count("true") == 19
    with api_client(server) as api:
        assert api.get("batches").json()["total_items"] == 1
