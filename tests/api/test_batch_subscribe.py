"""Batch subscribe: `POST /lists/{list_id}` with up to 500 members."""

from __future__ import annotations

from typing import Any

from conveyor.composition import Services
from tests.api.spec import assert_shape
from tests.api.support import account_state, add_member, assert_json, assert_problem, error_fields
from tests.conftest import ApiUser


def subscribe(api: ApiUser, list_id: str, members: list[dict[str, Any]], **extra: Any) -> Any:
    response = api.client.post(f"/3.0/lists/{list_id}", json={"members": members, **extra})
    body = assert_json(response)
    assert_shape(body, operation=("POST", "/lists/{list_id}"))
    assert body["total_created"] == len(body["new_members"])
    assert body["total_updated"] == len(body["updated_members"])
    assert body["error_count"] == len(body["errors"])
    return body


def test_new_members(api: ApiUser, list_id: str) -> None:
    body = subscribe(
        api,
        list_id,
        [
            {"email_address": "a@example.com", "status": "subscribed"},
            {"email_address": "b@example.com", "status": "pending", "merge_fields": {"FNAME": "B"}},
            {"email_address": "c@example.com", "status_if_new": "unsubscribed", "tags": ["x"]},
        ],
    )
    assert [m["email_address"] for m in body["new_members"]] == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]
    assert [m["status"] for m in body["new_members"]] == ["subscribed", "pending", "unsubscribed"]
    assert body["new_members"][1]["merge_fields"]["FNAME"] == "B"
    assert [t["name"] for t in body["new_members"][2]["tags"]] == ["x"]
    assert (body["total_created"], body["total_updated"], body["error_count"]) == (3, 0, 0)
    assert body["errors"] == [] and body["updated_members"] == []
    listing = assert_json(api.client.get(f"/3.0/lists/{list_id}/members"))
    assert listing["total_items"] == 3


def test_existing_members_without_update_existing(api: ApiUser, list_id: str) -> None:
    add_member(api, list_id, "old@example.com", merge_fields={"FNAME": "Old"})
    body = subscribe(
        api,
        list_id,
        [
            {"email_address": "old@example.com", "status": "unsubscribed"},
            {"email_address": "new@example.com", "status": "subscribed"},
        ],
    )
    assert (body["total_created"], body["total_updated"], body["error_count"]) == (1, 0, 1)
    error = body["errors"][0]
    assert error["email_address"] == "old@example.com"
    assert error["error_code"] == "ERROR_CONTACT_EXISTS"
    assert "already a list member" in error["error"]
    member = assert_json(api.client.get(f"/3.0/lists/{list_id}/members/old@example.com"))
    assert member["status"] == "subscribed"


def test_update_existing(api: ApiUser, list_id: str) -> None:
    add_member(api, list_id, "old@example.com", merge_fields={"FNAME": "Old"}, tags=["keep"])
    body = subscribe(
        api,
        list_id,
        [
            {
                "email_address": "OLD@example.com",
                "status": "unsubscribed",
                "merge_fields": {"LNAME": "New"},
                "tags": ["added"],
            },
            {"email_address": "fresh@example.com", "status": "subscribed"},
        ],
        update_existing=True,
    )
    assert (body["total_created"], body["total_updated"], body["error_count"]) == (1, 1, 0)
    updated = body["updated_members"][0]
    assert updated["status"] == "unsubscribed"
    assert (updated["merge_fields"]["FNAME"], updated["merge_fields"]["LNAME"]) == ("Old", "New")
    assert sorted(t["name"] for t in updated["tags"]) == ["added", "keep"]


def test_sync_tags_replaces_tags(api: ApiUser, list_id: str) -> None:
    add_member(api, list_id, "sync@example.com", tags=["one", "two"])
    body = subscribe(
        api,
        list_id,
        [{"email_address": "sync@example.com", "tags": ["two", "three"]}],
        update_existing=True,
        sync_tags=True,
    )
    assert sorted(t["name"] for t in body["updated_members"][0]["tags"]) == ["three", "two"]


def test_errors_are_generic_and_the_rest_is_stored(api: ApiUser, list_id: str) -> None:
    body = subscribe(
        api,
        list_id,
        [
            {"email_address": "bad", "status": "subscribed"},
            {"email_address": "nostatus@example.com"},
            {"status": "subscribed"},
            {"email_address": "typed@example.com", "status": "subscribed", "vip": "yes"},
            {"email_address": "good@example.com", "status": "subscribed"},
        ],
    )
    assert (body["total_created"], body["error_count"]) == (1, 4)
    assert {e["error_code"] for e in body["errors"]} == {"ERROR_GENERIC"}
    by_email = {e["email_address"]: e for e in body["errors"]}
    assert by_email["bad"]["error"] == (
        "bad looks fake or invalid, please enter a real email address."
    )
    assert by_email["nostatus@example.com"]["field"] == "status"
    assert by_email[""]["field"] == "email_address"
    assert by_email["typed@example.com"]["field"] == "vip"
    listing = assert_json(api.client.get(f"/3.0/lists/{list_id}/members"))
    assert [m["email_address"] for m in listing["members"]] == ["good@example.com"]


def test_forgotten_address_is_an_error(api: ApiUser, list_id: str) -> None:
    member = add_member(api, list_id, "gone@example.com")
    api.client.post(f"/3.0/lists/{list_id}/members/{member['id']}/actions/delete-permanent")
    body = subscribe(
        api,
        list_id,
        [{"email_address": "gone@example.com", "status": "subscribed"}],
        update_existing=True,
    )
    assert body["error_count"] == 1
    assert body["errors"][0]["error_code"] == "ERROR_GENERIC"
    assert "permanently deleted" in body["errors"][0]["error"]


def test_duplicate_in_one_request(api: ApiUser, list_id: str) -> None:
    body = subscribe(
        api,
        list_id,
        [
            {"email_address": "dup@example.com", "status": "subscribed"},
            {"email_address": "DUP@example.com", "status": "subscribed"},
        ],
    )
    assert (body["total_created"], body["error_count"]) == (1, 1)
    assert body["errors"][0]["error_code"] == "ERROR_CONTACT_EXISTS"


def test_five_hundred_members_is_the_limit(api: ApiUser, list_id: str, services: Services) -> None:
    many = [{"email_address": f"m{n}@example.com", "status": "subscribed"} for n in range(501)]
    before = account_state(services, api.account_id)
    response = api.client.post(f"/3.0/lists/{list_id}", json={"members": many})
    assert error_fields(assert_problem(response, 400, "Invalid Resource")) == {"members"}
    assert account_state(services, api.account_id) == before
    body = subscribe(api, list_id, many[:500])
    assert body["total_created"] == 500


def test_bad_requests(api: ApiUser, list_id: str) -> None:
    url = f"/3.0/lists/{list_id}"
    for payload, field in (
        ({}, "members"),
        ({"members": "a@example.com"}, "members"),
        ({"members": [], "update_existing": "yes"}, "update_existing"),
    ):
        problem = assert_problem(api.client.post(url, json=payload), 400, "Invalid Resource")
        assert field in error_fields(problem)
    assert_problem(api.client.post("/3.0/lists/0123456789", json={"members": []}), 404)
