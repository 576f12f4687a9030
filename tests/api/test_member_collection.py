"""The member collection: paging, the status filter, `fields` / `exclude_fields`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.spec import assert_shape
from tests.api.support import add_member, assert_json, assert_problem, error_fields
from tests.conftest import ApiUser


@pytest.fixture
def emails(api: ApiUser, list_id: str) -> list[str]:
    """25 members through batch subscribe (one request), in creation order."""
    addresses = [f"member{n:02d}@example.com" for n in range(25)]
    statuses = ["subscribed", "subscribed", "unsubscribed", "cleaned", "pending"]
    body = assert_json(
        api.client.post(
            f"/3.0/lists/{list_id}",
            json={
                "members": [
                    {"email_address": email, "status": statuses[n % 5]}
                    for n, email in enumerate(addresses)
                ]
            },
        )
    )
    assert body["total_created"] == 25
    return addresses


def page(api: ApiUser, list_id: str, **params: Any) -> dict[str, Any]:
    return dict(assert_json(api.client.get(f"/3.0/lists/{list_id}/members", params=params)))


def test_default_page_is_ten(api: ApiUser, list_id: str, emails: list[str]) -> None:
    body = page(api, list_id)
    assert_shape(body, operation=("GET", "/lists/{list_id}/members"))
    assert [m["email_address"] for m in body["members"]] == emails[:10]
    assert body["total_items"] == 25
    assert body["list_id"] == list_id
    rels = {link["rel"] for link in body["_links"]}
    assert {"self", "parent", "create"} <= rels


def test_count_and_offset(api: ApiUser, list_id: str, emails: list[str]) -> None:
    seen: list[str] = []
    for offset in range(0, 25, 7):
        body = page(api, list_id, count=7, offset=offset)
        assert body["total_items"] == 25
        seen += [m["email_address"] for m in body["members"]]
    assert seen == emails
    assert page(api, list_id, count=5000)["members"].__len__() == 25
    assert page(api, list_id, offset=100)["members"] == []
    assert page(api, list_id, count=0)["members"] == []


@pytest.mark.parametrize(
    "params",
    [{"count": -1}, {"count": "ten"}, {"offset": -5}, {"offset": "1.5"}, {"count": "1e3"}],
)
def test_bad_paging_is_invalid_resource(api: ApiUser, list_id: str, params: dict[str, Any]) -> None:
    response = api.client.get(f"/3.0/lists/{list_id}/members", params=params)
    problem = assert_problem(response, 400, "Invalid Resource")
    assert error_fields(problem) == set(params)


def test_huge_offset_is_an_empty_page(api: ApiUser, list_id: str, emails: list[str]) -> None:
    body = page(api, list_id, offset=10**30, count=10**30)
    assert body["members"] == [] and body["total_items"] == 25


def test_status_filter(api: ApiUser, list_id: str, emails: list[str]) -> None:
    expected = {
        "subscribed": 10,
        "unsubscribed": 5,
        "cleaned": 5,
        "pending": 5,
        "transactional": 0,
        "archived": 0,
    }
    for status, total in expected.items():
        body = page(api, list_id, status=status, count=100)
        assert body["total_items"] == total, status
        assert {m["status"] for m in body["members"]} <= {status}
    api.client.delete(f"/3.0/lists/{list_id}/members/{emails[0]}")
    assert page(api, list_id, status="archived")["total_items"] == 1
    assert page(api, list_id, status="subscribed")["total_items"] == 9


def test_unknown_status_filter(api: ApiUser, list_id: str) -> None:
    response = api.client.get(f"/3.0/lists/{list_id}/members", params={"status": "happy"})
    assert error_fields(assert_problem(response, 400, "Invalid Resource")) == {"status"}


def test_fields_with_dot_notation(api: ApiUser, list_id: str, emails: list[str]) -> None:
    body = page(api, list_id, count=2, fields="members.email_address,members.id,total_items")
    assert body == {
        "members": [
            {"email_address": emails[0], "id": body["members"][0]["id"]},
            {"email_address": emails[1], "id": body["members"][1]["id"]},
        ],
        "total_items": 25,
    }
    body = page(api, list_id, count=1, fields="members.merge_fields.FNAME,members.stats")
    assert body == {
        "members": [{"merge_fields": {"FNAME": ""}, "stats": body["members"][0]["stats"]}]
    }


def test_exclude_fields_with_dot_notation(api: ApiUser, list_id: str, emails: list[str]) -> None:
    body = page(
        api,
        list_id,
        count=1,
        exclude_fields="members._links,members.merge_fields.ADDRESS,_links,list_id",
    )
    assert set(body) == {"members", "total_items"}
    member = body["members"][0]
    assert "_links" not in member and "ADDRESS" not in member["merge_fields"]
    assert "FNAME" in member["merge_fields"] and member["email_address"] == emails[0]


def test_fields_on_one_member(api: ApiUser, list_id: str) -> None:
    created = add_member(api, list_id, "fields@example.com", merge_fields={"FNAME": "F"})
    url = f"/3.0/lists/{list_id}/members/{created['id']}"
    body = assert_json(api.client.get(url, params={"fields": "id,merge_fields.FNAME"}))
    assert body == {"id": created["id"], "merge_fields": {"FNAME": "F"}}
    response = api.client.get(url, params={"fields": "id,merge_fields.FNAME,nonsense"})
    problem = assert_problem(response, 422, "Requested Fields Invalid")
    assert error_fields(problem) == {"fields"}
    body = assert_json(api.client.get(url, params={"exclude_fields": "_links,merge_fields"}))
    assert "_links" not in body and "merge_fields" not in body and body["id"] == created["id"]
