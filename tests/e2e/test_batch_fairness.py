"""Fairness: a small batch does not wait for a large one (issue 3, "Fairness").

On the real service batches wait their turn, for minutes. Conveyor interleaves chunks of
different batches, so a 10-operation batch submitted while a 100,000-operation batch runs
finishes within seconds, long before the large one.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import RecordProperty
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
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

LARGE = 100_000
SMALL = 10
# Measured on an idle 2-core machine: 1 to 4 s (the small batch's steps each wait for a chunk
# of the large one to end). The bound leaves room for a busy CI machine while still failing
# for a queue that makes the small batch wait for the large one (tens of seconds or more).
SMALL_BATCH_SECONDS = 8.0


def member_add(list_id: str, prefix: str) -> str:
    return operation_template(
        {
            "method": "POST",
            "path": f"lists/{list_id}/members",
            "operation_id": f"{prefix}-IDX",
            "body": json.dumps(
                {"email_address": f"{prefix}IDX@example.org", "status": "subscribed"}
            ),
        }
    )


def test_small_batch_finishes_while_a_large_one_runs(
    server: ServerProcess, record_property: RecordProperty
) -> None:
    api = api_client(server, timeout=120)
    large_list, small_list = create_list(api), create_list(api)

    body = operations_body(member_add(large_list, "large"), LARGE)
    submitted = api.post("batches", content=body, headers={"Content-Type": "application/json"})
    assert submitted.status_code == 200, submitted.text
    large_id = submitted.json()["id"]
    # Wait until the large batch really occupies the workers: its first group has committed.
    wait_until(
        lambda: read_status(api, large_id),
        lambda batch: batch["finished_operations"] > 0,
        timeout=60,
    )

    small_body = operations_body(member_add(small_list, "small"), SMALL)
    started = time.perf_counter()
    small = api.post("batches", content=small_body, headers={"Content-Type": "application/json"})
    assert small.status_code == 200, small.text
    small_done = wait_finished(
        lambda: read_status(api, small.json()["id"]), timeout=60, interval=0.01
    )
    seconds = time.perf_counter() - started
    large = read_status(api, large_id)

    done_share = large["finished_operations"] / LARGE
    print(
        f"10-operation batch finished in {seconds:.2f} s while the {LARGE:,}-operation batch "
        f"was {large['status']} at {done_share:.0%}"
    )
    record_property("fairness_seconds", round(seconds, 2))
    record_property("large_done_share", round(done_share, 3))
    assert large["status"] != "finished"
    assert large["finished_operations"] < LARGE
    assert seconds < SMALL_BATCH_SECONDS
    assert (small_done["finished_operations"], small_done["errored_operations"]) == (SMALL, 0)
    results = download_archive(small_done)
    assert sorted(entry.operation_id or "" for entry in results) == sorted(
        f"small-{i}" for i in range(SMALL)
    )
    assert all(entry.status_code == 200 for entry in results)

    # The large batch can be stopped while it runs; nothing of it is readable afterwards.
    assert api.delete(f"batches/{large_id}").status_code == 204
    assert api.get(f"batches/{large_id}").status_code == 404
    assert api.get("ping").status_code == 200
    api.close()
