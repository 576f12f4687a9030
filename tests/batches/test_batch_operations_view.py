"""GET /3.0/batches/{id}/operations: every operation's result as soon as its group commits,
pending ones in place, filtered and paged from indexes, equal to the plain computation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.composition import Services
from conveyor.domain.steps import FollowUp, Step
from tests.batches.steer_support import all_operations, operations_page, plain_view
from tests.batches.support import (
    assert_problem,
    claim,
    create_list,
    drive,
    fetch_archive,
    get_batch,
    member_posts,
    run_claimed_group,
    set_chunk_lease,
    submit,
)
from tests.conftest import ApiUser


def mixed_operations(list_id: str, count: int) -> list[dict[str, Any]]:
    """Member adds where every fourth address is invalid (a 400 result)."""
    operations = member_posts(list_id, count)
    for i in range(3, count, 4):
        operations[i]["body"] = json.dumps({"email_address": f"bad{i}", "status": "subscribed"})
    return operations


def test_results_show_while_the_batch_runs(api: ApiUser, services: Services) -> None:
    client = api.client
    list_id = create_list(client)
    batch = submit(client, mixed_operations(list_id, 40))
    before = operations_page(client, batch["id"], count=1000)
    assert before["total_items"] == 40
    assert [item["status"] for item in before["operations"]] == ["pending"] * 40
    assert before["operations"][5] == {
        "seq": 5,
        "page": 0,
        "operation_id": "user-5",
        "method": "POST",
        "path": f"lists/{list_id}/members",
        "status": "pending",
        "status_code": None,
        "response": None,
    }

    services.engine.preprocess(batch["id"])
    held = claim(services, batch["id"])
    assert held is not None and held.next_seq == 0
    assert run_claimed_group(services, held, 0, 7)  # one group of 7 commits

    view = operations_page(client, batch["id"], count=1000)
    statuses = [item["status"] for item in view["operations"]]
    assert statuses[:7] == ["succeeded"] * 3 + ["failed"] + ["succeeded"] * 3
    assert statuses[7:] == ["pending"] * 33
    first = view["operations"][0]
    assert first["status_code"] == 200
    assert first["response"]["email_address"] == "user0@example.org"  # decoded JSON
    assert view["operations"][3]["response"]["title"] == "Invalid Resource"

    failed = operations_page(client, batch["id"], status="failed")
    assert failed["total_items"] == 1
    assert [item["operation_id"] for item in failed["operations"]] == ["user-3"]
    succeeded = operations_page(client, batch["id"], status="succeeded")
    assert succeeded["total_items"] == 6
    pending = operations_page(client, batch["id"], status="pending", count=5, offset=10)
    assert pending["total_items"] == 33
    assert [item["seq"] for item in pending["operations"]] == [17, 18, 19, 20, 21]
    # The holder "dies"; the rest of the batch runs from the cursor the group left.
    set_chunk_lease(services, batch["id"], 0.0)
    drive(services, batch["id"], first=[FollowUp(Step.WORK, batch["id"])])
    assert operations_page(client, batch["id"], status="pending")["total_items"] == 0


def test_a_finished_batch_filters_by_status_and_operation_id(
    api: ApiUser, services: Services
) -> None:
    client = api.client
    list_id = create_list(client)
    batch = submit(client, mixed_operations(list_id, 40))
    drive(services, batch["id"])
    done = get_batch(client, batch["id"])
    failed = all_operations(client, batch["id"], status="failed")
    assert len(failed) == done["errored_operations"] == 10
    assert all(item["status_code"] == 400 for item in failed)
    assert [item["seq"] for item in failed] == list(range(3, 40, 4))
    assert len(all_operations(client, batch["id"], status="succeeded")) == 30
    assert operations_page(client, batch["id"], status="pending")["total_items"] == 0

    one = operations_page(client, batch["id"], operation_id="user-7")
    assert one["total_items"] == 1
    assert one["operations"][0]["seq"] == 7 and one["operations"][0]["status"] == "failed"
    both = operations_page(client, batch["id"], operation_id="user-7", status="succeeded")
    assert both == {**both, "total_items": 0, "operations": []}
    assert operations_page(client, batch["id"], operation_id="user-")["total_items"] == 0

    # Paging: count and offset over the whole view, item n is operation n.
    page = operations_page(client, batch["id"], count=3, offset=38)
    assert [item["seq"] for item in page["operations"]] == [38, 39]
    assert page["total_items"] == 40
    assert operations_page(client, batch["id"], offset=40)["operations"] == []
    assert len(operations_page(client, batch["id"])["operations"]) == 10  # default count

    # Every item agrees with the archive's record of the same operation.
    archive = fetch_archive(client, done)
    items = all_operations(client, batch["id"])
    assert [(i["operation_id"], i["status_code"]) for i in items] == [
        (r["operation_id"], r["status_code"]) for r in archive.results
    ]
    assert [i["response"] for i in items] == [json.loads(r["response"]) for r in archive.results]


def test_count_is_capped_at_1000(api: ApiUser, services: Services) -> None:
    operations = [{"method": "GET", "path": "/ping", "operation_id": f"p{i}"} for i in range(1200)]
    batch = submit(api.client, operations)
    drive(services, batch["id"])
    page = operations_page(api.client, batch["id"], count=5000)
    assert len(page["operations"]) == 1000
    assert page["total_items"] == 1200


def test_a_paged_get_gives_one_item_per_page(api: ApiUser, services: Services) -> None:
    client = api.client
    list_id = create_list(client)
    seeded = submit(client, member_posts(list_id, 25, prefix="seed"))
    drive(services, seeded["id"])
    # Pages of 10 in these tests: a GET without `count` over 25 members is 3 results.
    operations = [
        *member_posts(list_id, 3),
        {"method": "GET", "path": f"/lists/{list_id}/members", "operation_id": "everyone"},
        *member_posts(list_id, 3, prefix="late"),
    ]
    batch = submit(client, operations)
    drive(services, batch["id"])
    assert get_batch(client, batch["id"])["total_operations"] == 9
    items = all_operations(client, batch["id"])
    assert [(item["seq"], item["page"]) for item in items] == [
        (0, 0), (1, 0), (2, 0), (3, 0), (3, 1), (3, 2), (4, 0), (5, 0), (6, 0),
    ]  # fmt: skip
    assert items == plain_view(services, batch["id"])
    assert [len(item["response"]["members"]) for item in items[3:6]] == [10, 10, 8]
    middle = operations_page(client, batch["id"], count=2, offset=4)
    assert [(i["seq"], i["page"]) for i in middle["operations"]] == [(3, 1), (3, 2)]
    assert operations_page(client, batch["id"], operation_id="everyone")["total_items"] == 3


def test_an_empty_response_is_null(api: ApiUser, services: Services) -> None:
    client = api.client
    list_id = create_list(client)
    batch = submit(client, member_posts(list_id, 1))
    drive(services, batch["id"])
    member = client.get(f"/3.0/lists/{list_id}/members").json()["members"][0]
    delete = [{"method": "DELETE", "path": f"lists/{list_id}/members/{member['id']}"}]
    deleted = submit(client, delete)
    drive(services, deleted["id"])
    item = operations_page(client, deleted["id"])["operations"][0]
    assert (item["status_code"], item["response"], item["operation_id"]) == (204, None, None)


def test_fields_and_exclude_fields(api: ApiUser, services: Services) -> None:
    client = api.client
    batch = submit(client, [{"method": "GET", "path": "/ping", "operation_id": "p"}])
    drive(services, batch["id"])
    url = f"/3.0/batches/{batch['id']}/operations"
    narrow = client.get(url, params={"fields": "operations.seq,operations.status,total_items"})
    assert narrow.json() == {
        "operations": [{"seq": 0, "status": "succeeded"}],
        "total_items": 1,
    }
    trimmed = client.get(url, params={"exclude_fields": "operations.response,_links"}).json()
    assert set(trimmed) == {"batch_id", "operations", "total_items"}
    assert "response" not in trimmed["operations"][0]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": "PENDING"}, "status"),
        ({"count": "-1"}, "count"),
        ({"offset": "x"}, "offset"),
    ],
)
def test_bad_parameters_are_problems(
    api: ApiUser, services: Services, params: dict[str, str], field: str
) -> None:
    batch = submit(api.client, [{"method": "GET", "path": "/ping"}])
    response = api.client.get(f"/3.0/batches/{batch['id']}/operations", params=params)
    problem = assert_problem(response, 400, "Invalid Resource")
    assert [error["field"] for error in problem["errors"]] == [field]


# --- the indexed paths agree with the plain computation ------------------------------------


@pytest.fixture(params=["paged-gets", "one-result-each"])
def half_run(
    request: pytest.FixtureRequest, api: ApiUser, services: Services
) -> tuple[ApiUser, str]:
    """A batch part run in an uneven order: failures, chunks at different cursors (one done,
    one part done, the rest not started), and paged GETs (positions then no longer map onto
    operations) or none."""
    client = api.client
    list_id = create_list(client)
    seeded = submit(client, member_posts(list_id, 25, prefix="seed"))
    drive(services, seeded["id"])
    operations = mixed_operations(list_id, 50)
    if request.param == "paged-gets":
        for seq in (2, 23, 44):
            operations[seq] = {"method": "GET", "path": f"/lists/{list_id}/members"}
    batch = submit(client, operations)
    services.engine.preprocess(batch["id"])
    first, second = claim(services, batch["id"]), claim(services, batch["id"])
    assert first is not None and second is not None
    assert (first.next_seq, second.next_seq) == (0, 20)
    assert run_claimed_group(services, second, 20, 27)
    for start in (0, 7, 14):
        assert run_claimed_group(services, first, start, min(start + 7, 20))
    return api, batch["id"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    status=st.sampled_from([None, "pending", "succeeded", "failed"]),
    operation_id=st.sampled_from([None, "user-1", "user-23", "user-30", "user-44", "none"]),
    count=st.integers(0, 30),
    offset=st.integers(0, 70),
)
def test_every_filtered_page_equals_the_plain_view(
    half_run: tuple[ApiUser, str],
    services: Services,
    status: str | None,
    operation_id: str | None,
    count: int,
    offset: int,
) -> None:
    api, batch_id = half_run
    expected = [
        item
        for item in plain_view(services, batch_id)
        if (status is None or item["status"] == status)
        and (operation_id is None or item["operation_id"] == operation_id)
    ]
    params: dict[str, Any] = {"count": count, "offset": offset}
    if status is not None:
        params["status"] = status
    if operation_id is not None:
        params["operation_id"] = operation_id
    page = operations_page(api.client, batch_id, **params)
    assert page["total_items"] == len(expected)
    assert page["operations"] == expected[offset : offset + count]
