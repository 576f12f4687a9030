"""POST /3.0/batches/{id}/retry: a new batch of exactly the finished batch's failed
operations, in order, with `retry_of`; narrowed by status codes; refused when nothing failed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from conveyor.composition import Services
from conveyor.storage.tables import batch_operations
from tests.batches.steer_support import all_operations, ndjson_lines
from tests.batches.support import (
    assert_problem,
    create_list,
    drive,
    get_batch,
    list_members,
    member_posts,
    submit,
)
from tests.batches.test_batch_operations_view import mixed_operations
from tests.conftest import ApiUser


def stored_operations(services: Services, batch_id: str) -> list[tuple[Any, ...]]:
    with services.database.read() as conn:
        rows = conn.execute(
            select(
                batch_operations.c.seq,
                batch_operations.c.method,
                batch_operations.c.path,
                batch_operations.c.params,
                batch_operations.c.body,
                batch_operations.c.operation_id,
            )
            .where(batch_operations.c.batch_id == batch_id)
            .order_by(batch_operations.c.seq)
        ).all()
    return [tuple(row) for row in rows]


def retry(api: ApiUser, batch_id: str, body: Any = None) -> Any:
    response = api.client.post(
        f"/3.0/batches/{batch_id}/retry",
        content=b"" if body is None else json.dumps(body).encode(),
    )
    return response


def test_a_retry_holds_exactly_the_failed_operations(api: ApiUser, services: Services) -> None:
    client = api.client
    list_id = create_list(client)
    operations = mixed_operations(list_id, 40)
    operations[5]["params"] = {"skip_merge_validation": "true"}
    operations[7]["params"] = {"skip_merge_validation": "true"}
    batch = submit(client, operations)
    drive(services, batch["id"])
    response = retry(api, batch["id"])
    assert response.status_code == 200, response.text
    again = response.json()
    assert again["retry_of"] == batch["id"] and again["id"] != batch["id"]
    assert again["status"] == "pending" and again["total_operations"] == 10
    assert "canceled_at" not in again
    # Same method, path, params, body and operation id, in their order, numbered afresh.
    failed_seqs = list(range(3, 40, 4))
    source = {row[0]: row[1:] for row in stored_operations(services, batch["id"])}
    assert stored_operations(services, again["id"]) == [
        (i, *source[seq]) for i, seq in enumerate(failed_seqs)
    ]
    assert source[7][2] == '{"skip_merge_validation":"true"}'
    # It runs as any batch does, and keeps `retry_of` for good.
    drive(services, again["id"])
    done = get_batch_with_extensions(api, again["id"])
    assert done["status"] == "finished" and done["retry_of"] == batch["id"]
    assert done["errored_operations"] == 10  # the same invalid addresses fail again
    assert [line["operation_id"] for line in ndjson_lines(client, again["id"])] == [
        f"user-{seq}" for seq in failed_seqs
    ]


def get_batch_with_extensions(api: ApiUser, batch_id: str) -> dict[str, Any]:
    response = api.client.get(f"/3.0/batches/{batch_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_status_codes_narrow_the_retry(api: ApiUser, services: Services) -> None:
    client = api.client
    list_id = create_list(client)
    operations = [
        *mixed_operations(list_id, 8),  # two 400s
        {"method": "GET", "path": "/lists/nope", "operation_id": "missing"},  # a 404
    ]
    batch = submit(client, operations)
    drive(services, batch["id"])
    narrowed = retry(api, batch["id"], {"status_codes": [404, 429]})
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["total_operations"] == 1
    drive(services, narrowed.json()["id"])
    assert [item["operation_id"] for item in all_operations(client, narrowed.json()["id"])] == [
        "missing"
    ]
    both = retry(api, batch["id"], {"status_codes": [400, 404]}).json()
    assert both["total_operations"] == 3
    problem = assert_problem(retry(api, batch["id"], {"status_codes": [500]}), 400)
    assert problem["title"] == "Invalid Action"
    assert "no failed operations with status code 500" in problem["detail"]


def test_nothing_failed_is_a_problem(api: ApiUser, services: Services) -> None:
    list_id = create_list(api.client)
    batch = submit(api.client, member_posts(list_id, 5))
    drive(services, batch["id"])
    problem = assert_problem(retry(api, batch["id"]), 400, "Invalid Action")
    assert problem["detail"] == f"Batch {batch['id']} has no failed operations to retry."
    assert len(list_members(api.client, list_id)) == 5


def test_only_a_finished_batch_is_retried(api: ApiUser, services: Services) -> None:
    batch = submit(api.client, [{"method": "GET", "path": "/lists/nope"}])
    problem = assert_problem(retry(api, batch["id"]), 400, "Invalid Action")
    assert "only a finished batch can be retried" in problem["detail"]


@pytest.mark.parametrize(
    ("body", "title"),
    [
        ({"status_codes": []}, "Invalid Resource"),
        ({"status_codes": ["x"]}, "Invalid Resource"),
        ({"status_codes": [42]}, "Invalid Resource"),
        ({"status_codes": 500}, "Invalid Resource"),
        ({"codes": [500]}, "Invalid Resource"),
        ([500], "Invalid Resource"),
        (b"{nope", "JSON Parse Exception"),
    ],
)
def test_a_bad_body_is_a_problem(api: ApiUser, services: Services, body: Any, title: str) -> None:
    batch = submit(api.client, [{"method": "GET", "path": "/lists/nope"}])
    drive(services, batch["id"])
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = api.client.post(f"/3.0/batches/{batch['id']}/retry", content=content)
    assert_problem(response, 400, title)
    assert get_batch(api.client, batch["id"])["status"] == "finished"
