"""Lists (audiences): create, read, page, update, delete; shapes as the spec's `ListsLists`."""

from __future__ import annotations

import re

from tests.api.spec import assert_shape, declared_properties
from tests.api.support import (
    account_state,
    add_member,
    assert_json,
    assert_problem,
    create_list,
    error_fields,
)
from tests.conftest import LIST_BODY, ApiUser

ROOT = "http://testserver/3.0"
LINK_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"}


def assert_links(links: list[dict[str, str]], expected: dict[str, str]) -> None:
    """Every link is absolute under the API root; `expected` maps rel -> method."""
    for entry in links:
        assert entry["href"].startswith(ROOT), entry
        assert entry["method"] in LINK_METHODS, entry
    assert {entry["rel"]: entry["method"] for entry in links} == expected


def test_create_list_answers_the_full_list(api: ApiUser) -> None:
    body = create_list(api)
    assert_shape(body, schema="ListsLists")
    assert declared_properties("ListsLists") <= set(body)
    assert re.fullmatch(r"[0-9a-f]{10}", body["id"])
    assert isinstance(body["web_id"], int)
    assert body["name"] == LIST_BODY["name"]
    assert body["contact"]["city"] == "Springfield"
    assert body["campaign_defaults"]["from_email"] == "news@acme.org"
    assert body["stats"]["member_count"] == 0
    href = f"{ROOT}/lists/{body['id']}"
    assert_links(
        body["_links"],
        {
            "self": "GET",
            "parent": "GET",
            "update": "PATCH",
            "batch-sub-unsub-members": "POST",
            "delete": "DELETE",
            "members": "GET",
            "merge-fields": "GET",
        },
    )
    assert {e["href"] for e in body["_links"] if e["rel"] in ("self", "delete")} == {href}


def test_new_list_has_the_default_merge_fields(api: ApiUser, list_id: str) -> None:
    body = assert_json(api.client.get(f"/3.0/lists/{list_id}/merge-fields"))
    by_tag = {field["tag"]: field for field in body["merge_fields"]}
    assert list(by_tag) == ["FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY"]
    assert [f["type"] for f in by_tag.values()] == ["text", "text", "address", "phone", "birthday"]
    assert body["total_items"] == 5
    for field in body["merge_fields"]:
        assert_shape(field, schema="ListsMergeFieldsMergeFields")
        assert field["list_id"] == list_id
        assert field["required"] is False


def test_get_one_list(api: ApiUser, list_id: str) -> None:
    body = assert_json(api.client.get(f"/3.0/lists/{list_id}"))
    assert_shape(body, schema="ListsLists")
    assert body["id"] == list_id


def test_unknown_list_is_not_found(api: ApiUser) -> None:
    assert_problem(api.client.get("/3.0/lists/0123456789"), 404, "Resource Not Found")


def test_list_collection_pages_and_counts(api: ApiUser) -> None:
    ids = [create_list(api, name=f"List {n}")["id"] for n in range(3)]
    body = assert_json(api.client.get("/3.0/lists"))
    assert_shape(body, operation=("GET", "/lists"))
    assert [item["id"] for item in body["lists"]] == ids
    assert body["total_items"] == 3
    assert body["constraints"]["may_create"] is True
    assert_links(body["_links"], {"self": "GET", "create": "POST"})

    page = assert_json(api.client.get("/3.0/lists", params={"count": 1, "offset": 1}))
    assert [item["id"] for item in page["lists"]] == ids[1:2]
    assert page["total_items"] == 3


def test_list_collection_fields(api: ApiUser, list_id: str) -> None:
    body = assert_json(api.client.get("/3.0/lists", params={"fields": "lists.id,total_items"}))
    assert body == {"lists": [{"id": list_id}], "total_items": 1}
    body = assert_json(
        api.client.get("/3.0/lists", params={"exclude_fields": "lists._links,lists.stats,_links"})
    )
    assert "_links" not in body
    assert "stats" not in body["lists"][0] and "_links" not in body["lists"][0]
    assert body["lists"][0]["name"] == "Newsletter"


def test_stats_count_members_by_status(api: ApiUser, list_id: str) -> None:
    add_member(api, list_id, "one@example.com")
    add_member(api, list_id, "two@example.com")
    add_member(api, list_id, "three@example.com", status="unsubscribed")
    stats = assert_json(api.client.get(f"/3.0/lists/{list_id}"))["stats"]
    assert stats["member_count"] == 2
    assert stats["unsubscribe_count"] == 1
    assert "total_contacts" not in stats  # only when asked for
    url = f"/3.0/lists/{list_id}"
    stats = assert_json(api.client.get(url, params={"include_total_contacts": "true"}))["stats"]
    assert stats["total_contacts"] == 3


def test_create_list_names_every_missing_field(api: ApiUser) -> None:
    problem = assert_problem(api.client.post("/3.0/lists", json={}), 400, "Invalid Resource")
    assert error_fields(problem) >= {
        "name",
        "permission_reminder",
        "email_type_option",
        "contact",
        "campaign_defaults",
    }


def test_create_list_names_nested_bad_fields(api: ApiUser) -> None:
    body = {**LIST_BODY, "contact": {**LIST_BODY["contact"], "city": 12}, "name": ["x"]}
    del body["contact"]["company"]
    problem = assert_problem(api.client.post("/3.0/lists", json=body), 400, "Invalid Resource")
    assert error_fields(problem) == {"name", "contact.city", "contact.company"}
    assert api.client.get("/3.0/lists").json()["total_items"] == 0


def test_patch_list(api: ApiUser, list_id: str) -> None:
    body = assert_json(
        api.client.patch(
            f"/3.0/lists/{list_id}",
            json={"name": "Renamed", "double_optin": True, "permission_reminder": "Hi"},
        )
    )
    assert_shape(body, schema="ListsLists")
    assert (body["name"], body["double_optin"], body["permission_reminder"]) == (
        "Renamed",
        True,
        "Hi",
    )
    again = assert_json(api.client.get(f"/3.0/lists/{list_id}"))
    assert again["name"] == "Renamed"
    assert again["contact"] == body["contact"]


def test_patch_list_rejects_bad_fields_and_keeps_the_list(
    api: ApiUser, list_id: str, services: object
) -> None:
    before = api.client.get(f"/3.0/lists/{list_id}").json()
    for patch in (
        {"name": 5},
        {"name": ""},
        {"name": "x" * 101},
        {"email_type_option": "maybe"},
        {"contact": {"city": "Only a city"}},
    ):
        problem = assert_problem(
            api.client.patch(f"/3.0/lists/{list_id}", json=patch), 400, "Invalid Resource"
        )
        assert error_fields(problem), problem
    after = api.client.get(f"/3.0/lists/{list_id}").json()
    assert after == before


def test_patch_unknown_list_is_not_found(api: ApiUser) -> None:
    response = api.client.patch("/3.0/lists/0123456789", json={"name": "x"})
    assert_problem(response, 404, "Resource Not Found")


def test_delete_list_removes_it_and_its_members(
    api: ApiUser, list_id: str, services: object
) -> None:
    add_member(api, list_id, "gone@example.com", tags=["t"])
    response = api.client.delete(f"/3.0/lists/{list_id}")
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(api.client.get(f"/3.0/lists/{list_id}"), 404)
    assert_problem(api.client.get(f"/3.0/lists/{list_id}/members"), 404)
    assert_problem(api.client.delete(f"/3.0/lists/{list_id}"), 404)
    state = account_state(services, api.account_id)  # type: ignore[arg-type]
    assert state == {"lists": [], "members": [], "merge_fields": [], "tags": []}


def test_contact_state_and_zip_are_optional(api: ApiUser) -> None:
    """The spec's POST /lists requires only company, address1, city and country."""
    contact = {k: v for k, v in LIST_BODY["contact"].items() if k not in ("state", "zip")}
    body = create_list(api, contact=contact)
    assert (body["contact"]["state"], body["contact"]["zip"]) == ("", "")
