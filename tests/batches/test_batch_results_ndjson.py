"""GET /3.0/batches/{id}/results.ndjson: one line per result record in seq order, the
response decoded; the same records as the archive; the results so far while it runs."""

from __future__ import annotations

import json

import pytest

from conveyor.composition import Services
from tests.batches.steer_support import archive_as_lines, ndjson_lines
from tests.batches.support import (
    assert_problem,
    claim,
    create_list,
    drive,
    fetch_archive,
    get_batch,
    member_posts,
    run_claimed_group,
    submit,
)
from tests.batches.test_batch_operations_view import mixed_operations
from tests.conftest import ApiUser


def test_the_lines_equal_the_archive_record_for_record(api: ApiUser, services: Services) -> None:
    client = api.client
    list_id = create_list(client)
    seeded = submit(client, member_posts(list_id, 25, prefix="seed"))
    drive(services, seeded["id"])
    operations = [
        *mixed_operations(list_id, 40),
        {"method": "GET", "path": f"/lists/{list_id}/members", "operation_id": "paged"},
        {"method": "DELETE", "path": f"lists/{list_id}/members/nobody", "operation_id": "gone"},
    ]
    batch = submit(client, operations)
    drive(services, batch["id"])
    done = get_batch(client, batch["id"])
    lines = ndjson_lines(client, batch["id"])
    assert lines == archive_as_lines(fetch_archive(client, done))
    # 55 members by then (25 seeded, 30 added) in pages of 10: the GET gives 6 results.
    assert len(lines) == done["total_operations"] == 40 + 6 + 1
    assert lines[0]["response"]["email_address"] == "user0@example.org"  # JSON, not a string

    failed = ndjson_lines(client, batch["id"], status="failed")
    assert failed == [line for line in lines if not 200 <= line["status_code"] <= 299]
    assert len(failed) == done["errored_operations"] == 11
    succeeded = ndjson_lines(client, batch["id"], status="succeeded")
    assert len(succeeded) + len(failed) == len(lines)


@pytest.mark.batch_settings(chunk_size=2_500, group_size=500)
def test_pages_of_the_stream_join_seamlessly(api: ApiUser, services: Services) -> None:
    """More lines than one read page (2,000): every record once, in order."""
    operations = [{"method": "GET", "path": "/ping", "operation_id": f"p{i}"} for i in range(4_500)]
    batch = submit(api.client, operations)
    drive(services, batch["id"])
    lines = ndjson_lines(api.client, batch["id"])
    assert [line["operation_id"] for line in lines] == [f"p{i}" for i in range(4_500)]
    assert {line["status_code"] for line in lines} == {200}


def test_a_running_batch_streams_the_results_so_far(api: ApiUser, services: Services) -> None:
    client = api.client
    list_id = create_list(client)
    batch = submit(client, mixed_operations(list_id, 40))
    assert ndjson_lines(client, batch["id"]) == []
    services.engine.preprocess(batch["id"])
    second_chunk = [claim(services, batch["id"]), claim(services, batch["id"])][1]
    assert second_chunk is not None
    assert run_claimed_group(services, second_chunk, 20, 27)
    lines = ndjson_lines(client, batch["id"])
    assert [line["operation_id"] for line in lines] == [f"user-{i}" for i in range(20, 27)]
    assert [line["status_code"] for line in lines] == [200, 200, 200, 400, 200, 200, 200]
    assert json.dumps(lines[3]["response"]).count("Invalid Resource") == 1


@pytest.mark.parametrize("status", ["pending", "bogus"])
def test_only_finished_statuses_filter_the_stream(
    api: ApiUser, services: Services, status: str
) -> None:
    batch = submit(api.client, [{"method": "GET", "path": "/ping"}])
    response = api.client.get(
        f"/3.0/batches/{batch['id']}/results.ndjson", params={"status": status}
    )
    problem = assert_problem(response, 400, "Invalid Resource")
    assert problem["errors"][0]["field"] == "status"
