"""Status, counters and the results archive."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx2
import pytest

from conveyor.composition import Services
from conveyor.domain.steps import FollowUp, Step
from conveyor.runtime.embedded import EmbeddedRuntime
from tests.batches.support import (
    STATUSES,
    assert_counters_match,
    create_list,
    download,
    drive,
    fetch_archive,
    get_batch,
    member_posts,
    read_archive,
    response_of,
    submit,
)
from tests.conftest import ApiUser


def _seeded_list(client: httpx2.Client) -> str:
    """A list holding user0..user29 before the batch: operations run in any order, so what
    a batch reads or collides with must not be written by the same batch."""
    seeded = create_list(client)
    for operation in member_posts(seeded, 30):
        response = client.post(f"/3.0/lists/{seeded}/members", content=operation["body"])
        assert response.status_code == 200, response.text
    return seeded


def _mixed_operations(list_id: str, seeded: str) -> list[dict[str, Any]]:
    operations = member_posts(list_id, 30)
    operations += [
        # Errored ones: a fake address, a duplicate, an unknown route.
        {"method": "POST", "path": f"lists/{list_id}/members", "operation_id": "fake",
         "body": {"email_address": "nope", "status": "subscribed"}},
        {"method": "POST", "path": f"lists/{seeded}/members", "operation_id": "duplicate",
         "body": {"email_address": "user0@example.org", "status": "subscribed"}},
        {"method": "GET", "path": "no/such/route", "operation_id": "unknown"},
        # A paged GET: 30 members in pages of 10 → 3 results, 2 more operations.
        {"method": "GET", "path": f"lists/{seeded}/members", "operation_id": "pages"},
        {"method": "GET", "path": "lists"},
    ]  # fmt: skip
    return operations


def test_status_only_moves_forward_and_counters_never_decrease(
    api: ApiUser, services: Services
) -> None:
    """Every step of the life cycle, run by hand, observed through the API after each."""
    client = api.client
    list_id = create_list(client)
    batch = submit(client, _mixed_operations(list_id, _seeded_list(client)))
    seen = [batch]

    def observe(_step: FollowUp) -> None:
        seen.append(get_batch(client, batch["id"]))

    drive(services, batch["id"], after_step=observe)

    for before, after in itertools.pairwise(seen):
        assert STATUSES.index(after["status"]) >= STATUSES.index(before["status"])
        for counter in ("total_operations", "finished_operations", "errored_operations"):
            assert after[counter] >= before[counter], (before, after)
    observed = [snapshot["status"] for snapshot in seen]
    assert observed[0] == "pending" and observed[-1] == "finished"
    assert {"started", "finished"} <= set(observed)
    # A finished batch stays finished whatever a late or duplicate message does.
    engine = services.engine
    for step in (engine.preprocess, engine.work, engine.finalize):
        step(batch["id"])
    assert engine.sweep(idle_seconds=0) == []
    final = get_batch(client, batch["id"])
    del final["response_body_url"], seen[-1]["response_body_url"]  # minted on each read
    assert final == seen[-1]


def test_counters_equal_the_archive(batch_api: ApiUser, runtime: EmbeddedRuntime) -> None:
    client = batch_api.client
    list_id = create_list(client)
    operations = _mixed_operations(list_id, _seeded_list(client))
    batch = submit(client, operations)
    runtime.join()
    done = get_batch(client, batch["id"])
    assert done["status"] == "finished"
    archive = fetch_archive(client, done)
    assert_counters_match(done, archive)
    # 35 operations, of which the paged GET became 3: 37 in all; 3 errored.
    assert done["total_operations"] == len(operations) + 2 == 37
    assert done["errored_operations"] == 3
    by_id = archive.by_operation_id()
    assert by_id["fake"][0]["status_code"] == 400
    assert by_id["duplicate"][0]["status_code"] == 400
    assert response_of(by_id["duplicate"][0])["title"] == "Member Exists"
    assert by_id["unknown"][0]["status_code"] == 404
    assert [r["status_code"] for r in by_id["pages"]] == [200, 200, 200]
    assert len(by_id[None]) == 1  # no operation_id → null
    for i in range(30):
        (result,) = by_id[f"user-{i}"]
        assert result["status_code"] == 200
        assert response_of(result)["email_address"] == f"user{i}@example.org"


def test_archive_layout_and_headers(batch_api: ApiUser, runtime: EmbeddedRuntime) -> None:
    client = batch_api.client
    list_id = create_list(client)
    batch = submit(client, member_posts(list_id, 3))
    runtime.join()
    done = get_batch(client, batch["id"])
    response = download(client, done["response_body_url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/gzip"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="{batch["id"]}-response.tar.gz"'
    )
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.content[:2] == b"\x1f\x8b"
    archive = read_archive(response.content)
    assert len(archive.names) == 1  # a small batch: one file
    (file,) = archive.files
    assert [r["operation_id"] for r in file] == ["user-0", "user-1", "user-2"]
    # `response` is the body as a JSON string, not an embedded object.
    assert all(isinstance(json.loads(r["response"]), dict) for r in file)


def test_empty_batch_finishes_with_an_empty_file(
    batch_api: ApiUser, runtime: EmbeddedRuntime
) -> None:
    client = batch_api.client
    batch = submit(client, [])
    runtime.join()
    done = get_batch(client, batch["id"])
    assert (done["status"], done["total_operations"], done["finished_operations"]) == (
        "finished",
        0,
        0,
    )
    archive = fetch_archive(client, done)
    assert archive.files == [[]]


def test_more_results_than_a_file_holds_split_across_files(
    batch_api: ApiUser, runtime: EmbeddedRuntime, services: Services
) -> None:
    per_file = services.settings.batches.results_per_file
    client = batch_api.client
    list_id = create_list(client)
    operations = member_posts(list_id, per_file * 2 + 5)
    batch = submit(client, operations)
    runtime.join()
    done = get_batch(client, batch["id"])
    archive = fetch_archive(client, done)
    assert [len(file) for file in archive.files] == [per_file, per_file, 5]
    assert [r["operation_id"] for r in archive.results] == [op["operation_id"] for op in operations]
    assert_counters_match(done, archive)


@pytest.mark.batch_settings(results_per_file=3)
def test_paged_get_results_spread_over_files(api: ApiUser, services: Services) -> None:
    client = api.client
    list_id = create_list(client)
    setup = submit(client, member_posts(list_id, 35))
    drive(services, setup["id"])
    batch = submit(
        client, [{"method": "GET", "path": f"lists/{list_id}/members", "operation_id": "all"}]
    )
    drive(services, batch["id"])
    done = get_batch(client, batch["id"])
    archive = fetch_archive(client, done)
    assert [len(file) for file in archive.files] == [3, 1]
    assert (done["total_operations"], done["finished_operations"]) == (4, 4)
    emails = {
        member["email_address"]
        for result in archive.results
        for member in response_of(result)["members"]
    }
    assert len(emails) == 35


def test_drive_reaches_the_same_end_from_duplicate_messages(
    api: ApiUser, services: Services
) -> None:
    """Every message sent twice, as a redelivering broker may: the outcome is the same."""
    client = api.client
    list_id = create_list(client)
    operations = member_posts(list_id, 45)
    batch = submit(client, operations)
    batch_id = batch["id"]
    duplicated = [FollowUp(step, batch_id) for step in Step if step is not Step.DELIVER] * 2
    drive(services, batch_id, first=[FollowUp(Step.PREPROCESS, batch_id), *duplicated])
    done = get_batch(client, batch_id)
    assert done["status"] == "finished"
    archive = fetch_archive(client, done)
    assert sorted(r["operation_id"] for r in archive.results) == sorted(
        op["operation_id"] for op in operations
    )
    assert_counters_match(done, archive)
