"""The Batch endpoint through the official Python clients, against a real `conveyor serve`.

The clients are pointed at the server as docs/compatibility.md ("The official clients") says
and are used exactly as their documentation shows: submit, poll the status, list, download
the archive from `response_body_url` with no key, delete.
"""

from __future__ import annotations

import json
import re
from typing import Any

import mailchimp_marketing
import pytest
from mailchimp3 import MailChimp
from mailchimp3.mailchimpclient import MailChimpError
from mailchimp_marketing.api_client import ApiClientError

from tests.conftest import LIST_BODY
from tests.e2e.batch_support import (
    ArchiveEntry,
    Progress,
    download_archive,
    md5,
    wait_finished,
)
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

BATCH_ID = re.compile(r"[0-9a-f]{10}")
BATCH_FIELDS = {
    "id",
    "status",
    "total_operations",
    "finished_operations",
    "errored_operations",
    "submitted_at",
    "completed_at",
    "response_body_url",
    "_links",
}
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


def marketing_client(server: ServerProcess) -> Any:
    client = mailchimp_marketing.Client()
    client.set_config({"api_key": server.key, "server": "us1"})
    client.api_client.host = server.api_url
    return client


def mc3_client(server: ServerProcess) -> Any:
    client = MailChimp(mc_api=server.key)
    client.base_url = server.api_url + "/"
    return client


def member_operations(list_id: str, prefix: str, method: str = "POST") -> list[dict[str, Any]]:
    """Three adds (body as a JSON string, as Mailchimp documents it), one invalid, a read."""
    path = f"/lists/{list_id}/members"
    operations: list[dict[str, Any]] = [
        {
            "method": method,
            "path": path,
            "operation_id": f"{prefix}-{i}",
            "body": json.dumps(
                {"email_address": f"{prefix}{i}@example.org", "status": "subscribed"}
            ),
        }
        for i in range(3)
    ]
    operations.append(
        {
            "method": method,
            "path": path,
            "operation_id": f"{prefix}-bad",
            "body": json.dumps({"email_address": "not-an-email", "status": "subscribed"}),
        }
    )
    # No operation_id: its result carries null.
    operations.append({"method": "GET", "path": f"lists/{list_id}", "params": {"fields": "id"}})
    return operations


def assert_pending(batch: dict[str, Any], total: int) -> None:
    assert set(batch) >= BATCH_FIELDS
    assert BATCH_ID.fullmatch(batch["id"]), batch["id"]
    assert batch["status"] == "pending"
    assert batch["total_operations"] == total
    assert batch["finished_operations"] == batch["errored_operations"] == 0
    assert ISO_UTC.fullmatch(batch["submitted_at"]), batch["submitted_at"]
    assert batch["completed_at"] == batch["response_body_url"] == ""
    rels = {link["rel"] for link in batch["_links"]}
    assert {"self", "parent", "delete"} <= rels, rels


def assert_results(
    entries: list[ArchiveEntry], list_id: str, prefix: str
) -> dict[str | None, ArchiveEntry]:
    by_id = {entry.operation_id: entry for entry in entries}
    assert len(entries) == len(by_id) == 5, [e.operation_id for e in entries]
    for i in range(3):
        entry = by_id[f"{prefix}-{i}"]
        assert entry.status_code == 200, entry
        member = entry.body
        assert member["id"] == md5(f"{prefix}{i}@example.org")
        assert member["list_id"] == list_id
        assert isinstance(member["web_id"], int)
    bad = by_id[f"{prefix}-bad"]
    assert bad.status_code == 400
    assert bad.title == "Invalid Resource"
    assert by_id[None].status_code == 200
    assert by_id[None].body == {"id": list_id}
    return by_id


# -- mailchimp-marketing --------------------------------------------------------------------


def test_marketing_batches_start_status_list_delete(server: ServerProcess) -> None:
    client = marketing_client(server)
    list_id = client.lists.create_list(LIST_BODY)["id"]
    operations = member_operations(list_id, "mm")

    started = client.batches.start({"operations": operations})
    assert_pending(started, total=5)
    batch_id = started["id"]

    progress = Progress(batch_id)
    progress.add(started)
    done = wait_finished(lambda: client.batches.status(batch_id), timeout=30, progress=progress)
    assert (done["total_operations"], done["finished_operations"]) == (5, 5)
    assert done["errored_operations"] == 1
    assert ISO_UTC.fullmatch(done["completed_at"]), done["completed_at"]
    assert done["response_body_url"].startswith(f"{server.base_url}/")
    assert_results(download_archive(done), list_id, "mm")
    # The members really exist: the batch went through the same handlers as direct calls.
    assert client.lists.get_list_member(list_id, md5("mm1@example.org"))["status"] == "subscribed"

    # fields / exclude_fields on the status read.
    narrow = client.batches.status(batch_id, fields=["id", "status"])
    assert narrow == {"id": batch_id, "status": "finished"}
    trimmed = client.batches.status(batch_id, exclude_fields=["_links"])
    assert "_links" not in trimmed
    assert trimmed["id"] == batch_id

    # A second batch, so that list paging has something to page.
    second = client.batches.start({"operations": member_operations(list_id, "mn")})
    wait_finished(lambda: client.batches.status(second["id"]), timeout=30)
    listed = client.batches.list()
    assert listed["total_items"] == 2
    assert {b["id"] for b in listed["batches"]} == {batch_id, second["id"]}
    assert all(set(b) >= BATCH_FIELDS for b in listed["batches"])
    one = client.batches.list(count=1, offset=1, fields=["batches.id", "total_items"])
    assert one["total_items"] == 2
    assert len(one["batches"]) == 1
    assert set(one["batches"][0]) == {"id"}
    assert one["batches"][0]["id"] in {batch_id, second["id"]}

    deleted = client.batches.delete_request(batch_id)
    assert deleted.status_code == 204  # the client hands back the bare response on 204
    assert deleted.content == b""
    with pytest.raises(ApiClientError) as gone:
        client.batches.status(batch_id)
    assert gone.value.status_code == 404
    assert json.loads(gone.value.text)["title"] == "Resource Not Found"
    assert [b["id"] for b in client.batches.list()["batches"]] == [second["id"]]
    # Deleting removes the results too: the archive link that worked a moment ago is dead.
    with pytest.raises(AssertionError):
        download_archive(done)


# -- mailchimp3 -----------------------------------------------------------------------------


def test_mailchimp3_batch_operations_create_get_all(server: ServerProcess) -> None:
    client = mc3_client(server)
    list_id = client.lists.create(dict(LIST_BODY))["id"]
    operations = member_operations(list_id, "m3")  # mailchimp3 wants upper-case methods

    created = client.batch_operations.create(data={"operations": operations})
    assert_pending(created, total=5)
    batch_id = created["id"]

    progress = Progress(batch_id)
    progress.add(created)
    done = wait_finished(
        lambda: client.batch_operations.get(batch_id), timeout=30, progress=progress
    )
    assert (done["finished_operations"], done["errored_operations"]) == (5, 1)
    by_id = assert_results(download_archive(done), list_id, "m3")
    member = client.lists.members.get(list_id, md5("m30@example.org"))
    assert member["web_id"] == by_id["m3-0"].body["web_id"]

    # Params on a batched GET, and a PATCH of a member the first batch created.
    second = client.batch_operations.create(
        data={
            "operations": [
                {
                    "method": "GET",
                    "path": f"lists/{list_id}/members",
                    "params": {"count": "2", "fields": "members.email_address,total_items"},
                    "operation_id": "page",
                },
                {
                    "method": "PATCH",
                    "path": f"lists/{list_id}/members/{md5('m31@example.org')}",
                    "body": json.dumps({"merge_fields": {"FNAME": "Patched"}}),
                    "operation_id": "patch",
                },
            ]
        }
    )
    finished = wait_finished(lambda: client.batch_operations.get(second["id"]), timeout=30)
    assert finished["errored_operations"] == 0
    results = {entry.operation_id: entry for entry in download_archive(finished)}
    assert results["page"].body["total_items"] == 3
    assert len(results["page"].body["members"]) == 2
    assert results["patch"].body["merge_fields"]["FNAME"] == "Patched"

    # all(): one page, and get_all paging through count/offset.
    page = client.batch_operations.all(count=1, offset=0)
    assert page["total_items"] == 2
    assert len(page["batches"]) == 1
    everything = client.batch_operations.all(get_all=True, count=1)
    assert {b["id"] for b in everything["batches"]} == {batch_id, second["id"]}
    narrow = client.batch_operations.get(batch_id, fields="id,total_operations")
    assert narrow == {"id": batch_id, "total_operations": 5}

    assert client.batch_operations.delete(batch_id) is None  # 204
    with pytest.raises(MailChimpError) as gone:
        client.batch_operations.get(batch_id)
    assert gone.value.args[0]["status"] == 404
    remaining = client.batch_operations.all(get_all=True)
    assert [b["id"] for b in remaining["batches"]] == [second["id"]]
