"""Member tags: GET the collection, POST active / inactive changes."""

from __future__ import annotations

from conveyor.composition import Services
from tests.api.spec import assert_shape
from tests.api.support import account_state, add_member, assert_json, assert_problem, md5
from tests.conftest import ApiUser


def tags_url(list_id: str, key: str) -> str:
    return f"/3.0/lists/{list_id}/members/{key}/tags"


def names(api: ApiUser, list_id: str, key: str) -> list[str]:
    body = assert_json(api.client.get(tags_url(list_id, key)))
    return [tag["name"] for tag in body["tags"]]


def test_get_tags_shape(api: ApiUser, list_id: str) -> None:
    member = add_member(api, list_id, "tagged@example.com", tags=["alpha", "beta"])
    body = assert_json(api.client.get(tags_url(list_id, member["id"])))
    assert_shape(body, operation=("GET", "/lists/{list_id}/members/{subscriber_hash}/tags"))
    assert [tag["name"] for tag in body["tags"]] == ["alpha", "beta"]
    assert body["total_items"] == 2
    for tag in body["tags"]:
        assert set(tag) == {"id", "name", "date_added"}
        assert isinstance(tag["id"], int)
    assert {link["rel"] for link in body["_links"]} >= {"self", "parent"}


def test_post_tags_creates_and_removes(api: ApiUser, list_id: str) -> None:
    member = add_member(api, list_id, "tags@example.com", tags=["keep", "drop"])
    response = api.client.post(
        tags_url(list_id, "tags@example.com"),
        json={
            "tags": [
                {"name": "brand new", "status": "active"},
                {"name": "drop", "status": "inactive"},
                {"name": "never existed", "status": "inactive"},
                {"name": "keep", "status": "active"},
            ]
        },
    )
    assert response.status_code == 204
    assert response.content == b""
    assert names(api, list_id, member["id"]) == ["keep", "brand new"]
    body = assert_json(api.client.get(f"/3.0/lists/{list_id}/members/{member['id']}"))
    assert [tag["name"] for tag in body["tags"]] == ["keep", "brand new"]
    assert body["tags_count"] == 2


def test_tag_ids_are_shared_within_a_list(api: ApiUser, list_id: str) -> None:
    add_member(api, list_id, "one@example.com", tags=["shared"])
    add_member(api, list_id, "two@example.com")
    api.client.post(
        tags_url(list_id, "two@example.com"),
        json={"tags": [{"name": "shared", "status": "active"}]},
    )
    ids = {
        assert_json(api.client.get(tags_url(list_id, email)))["tags"][0]["id"]
        for email in ("one@example.com", "two@example.com")
    }
    assert len(ids) == 1


def test_tags_paging(api: ApiUser, list_id: str) -> None:
    member = add_member(api, list_id, "many@example.com", tags=[f"t{n}" for n in range(12)])
    body = assert_json(api.client.get(tags_url(list_id, member["id"])))
    assert body["total_items"] == 12 and len(body["tags"]) == 10
    body = assert_json(
        api.client.get(tags_url(list_id, member["id"]), params={"count": 5, "offset": 10})
    )
    assert [tag["name"] for tag in body["tags"]] == ["t10", "t11"]


def test_bad_tag_changes_store_nothing(api: ApiUser, list_id: str, services: Services) -> None:
    member = add_member(api, list_id, "strict.tags@example.com", tags=["a"])
    before = account_state(services, api.account_id)
    url = tags_url(list_id, member["id"])
    for body in (
        {"tags": [{"name": "b", "status": "maybe"}]},
        {"tags": [{"name": "", "status": "active"}]},
        {"tags": [{"name": "x" * 101, "status": "active"}]},
        {"tags": [{"status": "active"}]},
        {"tags": "b"},
        {"tags": [{"name": "ok", "status": "active"}, {"name": 5, "status": "active"}]},
    ):
        assert_problem(api.client.post(url, json=body), 400, "Invalid Resource")
    assert account_state(services, api.account_id) == before


def test_tags_of_unknown_member(api: ApiUser, list_id: str) -> None:
    url = tags_url(list_id, md5("nobody@example.com"))
    assert_problem(api.client.get(url), 404)
    assert_problem(api.client.post(url, json={"tags": []}), 404)
