"""The operation builders produce what Mailchimp documents, ready to submit."""

from __future__ import annotations

import hashlib
import json

import pytest

from conveyor.client import operations as ops
from conveyor.domain.operations import parse_operation

HASH = hashlib.md5(b"ann@example.org").hexdigest()


def test_add_member() -> None:
    op = ops.add_member(
        "L1", " Ann@Example.org ", merge_fields={"FNAME": "Ann"}, tags=["vip"], language="en"
    )
    assert op["method"] == "POST"
    assert op["path"] == "/lists/L1/members"
    assert op["operation_id"] == "ann@example.org"
    assert isinstance(op["body"], str)  # a JSON-encoded string, as Mailchimp documents
    assert json.loads(op["body"]) == {
        "email_address": "Ann@Example.org",
        "merge_fields": {"FNAME": "Ann"},
        "status": "subscribed",
        "language": "en",
        "tags": ["vip"],
    }


def test_upsert_member_uses_the_subscriber_hash_and_status_if_new() -> None:
    op = ops.upsert_member("L1", "ANN@example.org", operation_id="row-7")
    assert op["method"] == "PUT"
    assert op["path"] == f"/lists/L1/members/{HASH}"
    assert op["operation_id"] == "row-7"
    # No "status": an existing (say unsubscribed) member keeps the status it has.
    assert json.loads(op["body"]) == {
        "email_address": "ANN@example.org",
        "status_if_new": "subscribed",
    }
    forced = ops.upsert_member("L1", "ann@example.org", status="pending", status_if_new="pending")
    assert json.loads(forced["body"])["status"] == "pending"


def test_update_archive_and_tag() -> None:
    update = ops.update_member("L1", "ann@example.org", merge_fields={"LNAME": "X"}, vip=True)
    assert (update["method"], update["path"]) == ("PATCH", f"/lists/L1/members/{HASH}")
    assert json.loads(update["body"]) == {"vip": True, "merge_fields": {"LNAME": "X"}}

    archive = ops.archive_member("L1", "ann@example.org")
    assert archive == {
        "method": "DELETE",
        "path": f"/lists/L1/members/{HASH}",
        "operation_id": "ann@example.org",
    }

    tag = ops.tag_member("L1", "ann@example.org", add=["a"], remove=["b"], is_syncing=True)
    assert (tag["method"], tag["path"]) == ("POST", f"/lists/L1/members/{HASH}/tags")
    assert json.loads(tag["body"]) == {
        "tags": [{"name": "a", "status": "active"}, {"name": "b", "status": "inactive"}],
        "is_syncing": True,
    }
    with pytest.raises(ValueError):
        ops.tag_member("L1", "ann@example.org")


def test_paged_get() -> None:
    page = ops.get_page("lists/L1/members", count=500, offset=1000, fields=["members.id"])
    assert page == {
        "method": "GET",
        "path": "/lists/L1/members",
        "operation_id": "GET /lists/L1/members 1000",
        "params": {"count": 500, "offset": 1000, "fields": "members.id"},
    }
    pages = list(ops.get_pages("/lists/L1/members", 2500))
    assert [p["params"]["offset"] for p in pages] == [0, 1000, 2000]
    assert len({p["operation_id"] for p in pages}) == 3
    assert list(ops.get_pages("/lists/L1/members", 0)) == []
    with pytest.raises(ValueError):
        ops.get_page("/x", count=1001)
    with pytest.raises(ValueError):
        ops.get_page("/x", offset=-1)


def test_ids_in_paths_are_quoted() -> None:
    assert ops.archive_member("a/b?c", "x@example.org")["path"].startswith("/lists/a%2Fb%3Fc/")


def test_every_builder_passes_the_servers_own_operation_parser() -> None:
    built = [
        ops.add_member("L1", "a@example.org"),
        ops.upsert_member("L1", "a@example.org"),
        ops.update_member("L1", "a@example.org", vip=False),
        ops.archive_member("L1", "a@example.org"),
        ops.tag_member("L1", "a@example.org", add=["t"]),
        ops.get_page("/lists/L1/members"),
    ]
    for index, op in enumerate(built):
        parsed = parse_operation(op, index)
        assert parsed.operation_id == op["operation_id"]
        assert parsed.body == op.get("body")
