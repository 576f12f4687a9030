"""Operations on one member run in submission order, across chunks and workers (issue 9
item 8; docs/architecture.md decision 19)."""

from __future__ import annotations

import json
from typing import Any

from conveyor.domain.ids import subscriber_hash
from conveyor.runtime.embedded import EmbeddedRuntime
from tests.batches.support import create_list, fetch_archive, get_batch, list_members, submit
from tests.conftest import ApiUser

MEMBERS = 40


def _email(i: int) -> str:
    return f"order{i}@example.org"


def test_a_members_later_operations_never_overtake_its_post(
    batch_api: ApiUser, runtime: EmbeddedRuntime
) -> None:
    # Chunks of 20 (tests/batches/conftest.py) and two worker threads. Each block of 20
    # members is posted, then upserted, tagged and patched in reverse order, a chunk each, so
    # under plain consecutive chunks the second worker met a member's upsert while the first
    # had not posted it yet: the POST then got Member Exists.
    client = batch_api.client
    list_id = create_list(client)
    operations: list[dict[str, Any]] = []
    for block in range(0, MEMBERS, 20):
        members = range(block, block + 20)
        operations += [
            {
                "method": "POST",
                "path": f"lists/{list_id}/members",
                "operation_id": f"post-{i}",
                "body": json.dumps({"email_address": _email(i), "status": "subscribed"}),
            }
            for i in members
        ]
        operations += [
            {
                "method": "PUT",
                "path": f"lists/{list_id}/members/{subscriber_hash(_email(i))}",
                "operation_id": f"put-{i}",
                "body": json.dumps({"email_address": _email(i), "status_if_new": "pending"}),
            }
            for i in reversed(members)
        ]
        operations += [
            {
                "method": "POST",
                "path": f"lists/{list_id}/members/{subscriber_hash(_email(i))}/tags",
                "operation_id": f"tag-{i}",
                "body": json.dumps({"tags": [{"name": "late", "status": "active"}]}),
            }
            for i in reversed(members)
        ]
        operations += [
            {
                "method": "PATCH",
                "path": f"lists/{list_id}/members/{_email(i).upper()}",
                "operation_id": f"patch-{i}",
                "body": json.dumps({"status": "unsubscribed"}),
            }
            for i in reversed(members)
        ]
    batch = submit(client, operations)
    runtime.join()
    finished = get_batch(client, batch["id"])
    assert finished["status"] == "finished"
    archive = fetch_archive(client, finished)
    codes = {result["operation_id"]: result["status_code"] for result in archive.results}
    assert len(codes) == len(operations)
    expected = {op: 204 if op.startswith("tag-") else 200 for op in codes}
    assert codes == expected
    by_email = {m["email_address"]: m for m in list_members(client, list_id)}
    for i in range(MEMBERS):
        member = by_email[_email(i)]
        # The upsert kept the posted status (status_if_new), then the patch ran last.
        assert member["status"] == "unsubscribed"
        assert [tag["name"] for tag in member["tags"]] == ["late"]
