"""Two accounts: neither can read, change, delete or even detect the other's data."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.composition import Services
from tests.api.support import account_state, add_member, assert_json, assert_problem
from tests.conftest import ApiUser

MISSING_LIST = "0123456789"


@pytest.fixture
def owned(api: ApiUser, list_id: str) -> dict[str, str]:
    """One account's list with a member, a tag and a merge field of its own."""
    member = add_member(api, list_id, "private@example.com", tags=["secret"])
    field = assert_json(
        api.client.post(f"/3.0/lists/{list_id}/merge-fields", json={"name": "Own", "type": "text"})
    )
    return {
        "list_id": list_id,
        "hash": member["id"],
        "email": member["email_address"],
        "contact_id": member["contact_id"],
        "merge_id": str(field["merge_id"]),
    }


MEMBER = {"email_address": "private@example.com", "status": "subscribed"}
REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", "/lists/{list_id}", None),
    ("PATCH", "/lists/{list_id}", {"name": "Hijacked"}),
    ("DELETE", "/lists/{list_id}", None),
    ("POST", "/lists/{list_id}", {"members": [MEMBER], "update_existing": True}),
    ("GET", "/lists/{list_id}/members", None),
    ("GET", "/lists/{list_id}/members?status=subscribed", None),
    ("POST", "/lists/{list_id}/members", MEMBER),
    ("GET", "/lists/{list_id}/members/{hash}", None),
    ("GET", "/lists/{list_id}/members/{email}", None),
    ("GET", "/lists/{list_id}/members/{contact_id}", None),
    ("PUT", "/lists/{list_id}/members/{hash}", {**MEMBER, "status_if_new": "subscribed"}),
    ("PATCH", "/lists/{list_id}/members/{hash}", {"status": "unsubscribed"}),
    ("DELETE", "/lists/{list_id}/members/{hash}", None),
    ("POST", "/lists/{list_id}/members/{hash}/actions/delete-permanent", None),
    ("GET", "/lists/{list_id}/members/{hash}/tags", None),
    ("POST", "/lists/{list_id}/members/{hash}/tags", {"tags": [{"name": "x", "status": "active"}]}),
    ("GET", "/lists/{list_id}/merge-fields", None),
    ("POST", "/lists/{list_id}/merge-fields", {"name": "Mine", "type": "text"}),
    ("GET", "/lists/{list_id}/merge-fields/{merge_id}", None),
    ("PATCH", "/lists/{list_id}/merge-fields/{merge_id}", {"name": "Mine"}),
    ("DELETE", "/lists/{list_id}/merge-fields/{merge_id}", None),
]


@pytest.mark.parametrize(("method", "template", "body"), REQUESTS)
def test_other_account_gets_404_like_for_nothing(
    owned: dict[str, str],
    api: ApiUser,
    other_api: ApiUser,
    services: Services,
    method: str,
    template: str,
    body: Any,
) -> None:
    before = account_state(services, api.account_id)
    response = other_api.client.request(method, "/3.0" + template.format(**owned), json=body)
    problem = assert_problem(response, 404, "Resource Not Found")
    # Indistinguishable from a list that does not exist at all.
    missing = other_api.client.request(
        method, "/3.0" + template.format(**{**owned, "list_id": MISSING_LIST}), json=body
    )
    assert_problem(missing, 404)
    assert {k: v for k, v in missing.json().items() if k != "instance"} == {
        k: v for k, v in problem.items() if k != "instance"
    }
    assert account_state(services, api.account_id) == before
    assert account_state(services, other_api.account_id) == {
        "lists": [],
        "members": [],
        "merge_fields": [],
        "tags": [],
    }


def test_collections_show_only_own_data(
    owned: dict[str, str], api: ApiUser, other_api: ApiUser
) -> None:
    body = assert_json(other_api.client.get("/3.0/lists"))
    assert body["lists"] == [] and body["total_items"] == 0
    assert body["constraints"]["current_total_instances"] == 0
    root = assert_json(other_api.client.get("/3.0/"))
    assert root["account_id"] == other_api.account_id and root["total_subscribers"] == 0
    assert assert_json(api.client.get("/3.0/"))["total_subscribers"] == 1


def test_same_address_in_both_accounts_is_independent(
    owned: dict[str, str], api: ApiUser, other_api: ApiUser
) -> None:
    their_list = assert_json(
        other_api.client.post(
            "/3.0/lists", json=assert_json(api.client.get(f"/3.0/lists/{owned['list_id']}"))
        )
    )["id"]
    theirs = add_member(other_api, their_list, "private@example.com", status="unsubscribed")
    assert theirs["id"] == owned["hash"]  # same address, same hash
    assert theirs["contact_id"] != owned["contact_id"]
    assert theirs["tags"] == []
    mine = assert_json(api.client.get(f"/3.0/lists/{owned['list_id']}/members/{owned['hash']}"))
    assert mine["status"] == "subscribed"
    # Each account's contact_id resolves only in its own list.
    assert_problem(
        other_api.client.get(f"/3.0/lists/{their_list}/members/{owned['contact_id']}"), 404
    )
    listing = assert_json(other_api.client.get(f"/3.0/lists/{their_list}/members"))
    assert [m["contact_id"] for m in listing["members"]] == [theirs["contact_id"]]
