"""Metrics across processes: two `conveyor api` and a `conveyor worker` of two processes on
PostgreSQL and Redis. The worker's exporter sums its processes' operation counters, and
each API counts its own requests; the batch gauge reads the shared database."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import LIST_BODY, POSTGRES_ADMIN_URL
from tests.e2e.scaled import Deployment, Infrastructure, flush_redis, fresh_database
from tests.observability.support import value

REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379") + "/9"


@pytest.mark.e2e
@pytest.mark.postgres
def test_counters_add_up_across_processes(tmp_path: Path) -> None:
    flush_redis(REDIS_URL)
    with fresh_database(POSTGRES_ADMIN_URL, prefix="conveyor_obs") as database_url:
        infra = Infrastructure(database_url, REDIS_URL, (tmp_path / "blobs").as_uri())
        deployment = Deployment(
            tmp_path / "stack", infra, apis=2, workers=1, scheduler=False,
            worker_args=("--processes", "2", "--threads", "2"),
            env={"CONVEYOR_BATCH_CHUNK_SIZE": "20", "CONVEYOR_BATCH_GROUP_SIZE": "10"},
        )  # fmt: skip
        with deployment:
            key = deployment.new_key()
            with deployment.client(0, key) as first, deployment.client(1, key) as second:
                list_id = first.post("lists", json=LIST_BODY).json()["id"]
                operations = [
                    {"method": "POST", "path": f"lists/{list_id}/members",
                     "body": json.dumps({"email_address": address, "status": "subscribed"})}
                    for address in [f"m{i}@example.org" for i in range(90)] + ["bad"] * 10
                ]  # fmt: skip
                submitted = first.post("batches", json={"operations": operations})
                assert submitted.status_code == 200, submitted.text
                batch_id = submitted.json()["id"]
                deadline = time.monotonic() + 120
                polls = 0
                while True:
                    batch = second.get(f"batches/{batch_id}").json()
                    polls += 1
                    if batch["status"] == "finished":
                        break
                    assert time.monotonic() < deadline, deployment.logs()
                    time.sleep(0.2)
            assert batch["errored_operations"] == 10
            worker = httpx.get(f"http://127.0.0.1:{deployment.workers[0].port}/").text
            api_texts = [
                httpx.get(f"http://127.0.0.1:{api.port}/metrics").text for api in deployment.apis
            ]
            logs = deployment.logs(tail=100_000)

    ops = "conveyor_batch_operations_total"
    assert value(worker, ops, outcome="succeeded") == 90, worker
    assert value(worker, ops, outcome="failed") == 10
    # Conveyor's counters sit beside Dramatiq's, in the folder `conveyor worker` set up.
    assert "dramatiq_messages_total" in worker
    folder = tmp_path / "stack" / "worker-1" / "data" / "prometheus"
    assert list(folder.glob("*/counter_*.db")), list(folder.rglob("*"))
    requests = "conveyor_http_requests_total"
    first_text, second_text = api_texts
    assert value(first_text, requests, method="POST", route="/3.0/batches", status="200") == 1
    assert value(second_text, requests, method="POST", route="/3.0/batches", status="200") == 0
    assert (
        value(second_text, requests, method="GET", route="/3.0/batches/{batch_id}", status="200")
        == polls
    )
    for text in api_texts:
        assert value(text, "conveyor_batches", status="finished") == 1
        assert value(text, ops, outcome="succeeded") == 0  # the work ran in the worker
    assert f"batch step work {batch_id}" in logs
