"""Members: create, read by hash / email / contact_id, upsert, update, archive, erase."""

from __future__ import annotations

import re

import pytest

from conveyor.composition import Services
from tests.api.spec import assert_shape
from tests.api.support import (
    account_state,
    add_member,
    assert_json,
    assert_problem,
    create_list,
    error_fields,
    md5,
)
from tests.conftest import ApiUser


def members_url(list_id: str, key: str = "") -> str:
    return f"/3.0/lists/{list_id}/members" + (f"/{key}" if key else "")


def test_add_member(api: ApiUser, list_id: str) -> None:
    body = add_member(
        api, list_id, "Ann.Lee@Example.org", merge_fields={"FNAME": "Ann"}, tags=["vip"]
    )
    assert_shape(body, schema="ListsMembersMembers")
    assert body["id"] == "7b46be4e5fddd72590cfecc67a89132a"  # md5("ann.lee@example.org")
    assert re.fullmatch(r"[0-9a-f]{32}", body["id"])
    assert body["email_address"] == "Ann.Lee@Example.org"
    assert isinstance(body["web_id"], int) and not isinstance(body["web_id"], bool)
    assert body["status"] == "subscribed"
    assert body["list_id"] == list_id
    assert body["merge_fields"]["FNAME"] == "Ann"
    assert body["full_name"] == "Ann"
    assert [tag["name"] for tag in body["tags"]] == ["vip"]
    assert body["tags_count"] == 1
    assert body["timestamp_opt"]
    href = f"http://testserver/3.0/lists/{list_id}/members/{body['id']}"
    rels = {link["rel"]: (link["method"], link["href"]) for link in body["_links"]}
    assert rels["self"] == ("GET", href)
    assert rels["upsert"] == ("PUT", href)
    assert rels["delete"] == ("DELETE", href)


def test_web_ids_are_unique_integers_across_lists(api: ApiUser, list_id: str) -> None:
    second = create_list(api, name="Second")["id"]
    web_ids = [
        add_member(api, target, f"person{n}@example.com")["web_id"]
        for n in range(4)
        for target in (list_id, second)
    ]
    assert all(isinstance(web_id, int) for web_id in web_ids)
    assert len(set(web_ids)) == len(web_ids)


def test_get_member_by_hash_email_and_contact_id(api: ApiUser, list_id: str) -> None:
    created = add_member(api, list_id, "find.me@example.com")
    for key in (
        created["id"],
        created["id"].upper(),
        "find.me@example.com",
        "Find.Me@EXAMPLE.com",
        created["contact_id"],
    ):
        body = assert_json(api.client.get(members_url(list_id, key)))
        assert body == created | {"last_changed": body["last_changed"]}, key
    assert_problem(api.client.get(members_url(list_id, md5("nobody@example.com"))), 404)
    assert_problem(api.client.get(members_url(list_id, "nobody@example.com")), 404)


def test_unique_email_id_and_contact_id_are_stable(api: ApiUser, list_id: str) -> None:
    created = add_member(api, list_id, "stable@example.com")
    api.client.patch(members_url(list_id, created["id"]), json={"merge_fields": {"FNAME": "S"}})
    api.client.delete(members_url(list_id, created["id"]))
    again = add_member(api, list_id, "stable@example.com")
    for name in ("id", "web_id", "unique_email_id", "contact_id"):
        assert again[name] == created[name], name


def test_member_exists(api: ApiUser, list_id: str) -> None:
    add_member(api, list_id, "twice@example.com")
    for email in ("twice@example.com", "TWICE@example.com"):
        response = api.client.post(
            members_url(list_id), json={"email_address": email, "status": "subscribed"}
        )
        problem = assert_problem(response, 400, "Member Exists")
        assert problem["detail"] == (
            f"{email} is already a list member. Use PUT to insert or update list members."
        )


@pytest.mark.parametrize(
    "email",
    ["not-an-email", "a@b", "someone@example.invalid", "two@@example.com", " ", "x@-bad-.com"],
)
def test_fake_email_is_invalid_resource(api: ApiUser, list_id: str, email: str) -> None:
    response = api.client.post(
        members_url(list_id), json={"email_address": email, "status": "subscribed"}
    )
    problem = assert_problem(response, 400, "Invalid Resource")
    assert problem["detail"].endswith("looks fake or invalid, please enter a real email address.")


def test_add_member_validation_names_bad_fields(api: ApiUser, list_id: str) -> None:
    response = api.client.post(
        members_url(list_id),
        json={"email_address": 7, "status": "archived", "vip": "very", "email_type": "pdf"},
    )
    problem = assert_problem(response, 400, "Invalid Resource")
    assert error_fields(problem) == {"email_address", "status", "vip", "email_type"}
    problem = assert_problem(api.client.post(members_url(list_id), json={}), 400)
    assert error_fields(problem) == {"email_address", "status"}


def test_put_creates_with_status_if_new(api: ApiUser, list_id: str) -> None:
    email = "new.put@example.com"
    response = api.client.put(
        members_url(list_id, md5(email)),
        json={"email_address": email, "status_if_new": "pending", "merge_fields": {"LNAME": "P"}},
    )
    body = assert_json(response)
    assert_shape(body, schema="ListsMembersMembers")
    assert (body["id"], body["status"], body["merge_fields"]["LNAME"]) == (
        md5(email),
        "pending",
        "P",
    )


def test_put_by_email_in_path(api: ApiUser, list_id: str) -> None:
    body = assert_json(
        api.client.put(members_url(list_id, "path.only@example.com"), json={"status": "subscribed"})
    )
    assert (body["email_address"], body["status"]) == ("path.only@example.com", "subscribed")


def test_put_on_existing_ignores_status_if_new(api: ApiUser, list_id: str) -> None:
    created = add_member(api, list_id, "old.put@example.com", status="unsubscribed")
    url = members_url(list_id, created["id"])
    body = assert_json(
        api.client.put(
            url,
            json={
                "email_address": "old.put@example.com",
                "status_if_new": "subscribed",
                "merge_fields": {"FNAME": "Old"},
            },
        )
    )
    assert body["status"] == "unsubscribed"
    assert body["merge_fields"]["FNAME"] == "Old"
    assert body["web_id"] == created["web_id"]
    body = assert_json(api.client.put(url, json={"status": "subscribed"}))
    assert body["status"] == "subscribed"


def test_put_new_member_needs_a_status(api: ApiUser, list_id: str) -> None:
    email = "no.status@example.com"
    response = api.client.put(members_url(list_id, md5(email)), json={"email_address": email})
    assert_problem(response, 400, "Invalid Resource")
    assert_problem(api.client.get(members_url(list_id, email)), 404)


def test_put_hash_must_match_email(api: ApiUser, list_id: str) -> None:
    response = api.client.put(
        members_url(list_id, md5("someone.else@example.com")),
        json={"email_address": "me@example.com", "status_if_new": "subscribed"},
    )
    assert_problem(response, 400, "Invalid Resource")


def test_patch_member(api: ApiUser, list_id: str) -> None:
    created = add_member(api, list_id, "patch.me@example.com")
    body = assert_json(
        api.client.patch(
            members_url(list_id, created["id"]),
            json={
                "status": "unsubscribed",
                "merge_fields": {"LNAME": "Smith"},
                "vip": True,
                "language": "fr",
                "location": {"latitude": 1.5, "longitude": -2},
            },
        )
    )
    assert_shape(body, schema="ListsMembersMembers")
    assert body["status"] == "unsubscribed"
    assert body["merge_fields"]["LNAME"] == "Smith"
    assert (body["vip"], body["language"]) == (True, "fr")
    assert (body["location"]["latitude"], body["location"]["longitude"]) == (1.5, -2)
    assert assert_json(api.client.get(members_url(list_id, created["id"]))) == body


def test_patch_can_change_the_email(api: ApiUser, list_id: str) -> None:
    created = add_member(api, list_id, "before@example.com")
    add_member(api, list_id, "taken@example.com")
    url = members_url(list_id, created["id"])
    assert_problem(api.client.patch(url, json={"email_address": "taken@example.com"}), 400)
    # Its own address, spaced or cased differently, is no conflict.
    assert_json(api.client.patch(url, json={"email_address": " before@example.com "}))
    body = assert_json(api.client.patch(url, json={"email_address": "after@example.com"}))
    assert (body["id"], body["email_address"]) == (md5("after@example.com"), "after@example.com")
    assert body["contact_id"] == created["contact_id"]
    assert_json(api.client.get(members_url(list_id, "after@example.com")))
    assert_problem(api.client.get(members_url(list_id, "before@example.com")), 404)


def test_patch_rejects_bad_values(api: ApiUser, list_id: str, services: Services) -> None:
    created = add_member(api, list_id, "strict@example.com")
    before = account_state(services, api.account_id)
    url = members_url(list_id, created["id"])
    for patch, field in (
        ({"status": "archived"}, "status"),
        ({"status": "transactional"}, "status"),
        ({"email_type": 3}, "email_type"),
        ({"merge_fields": "FNAME"}, "merge_fields"),
        ({"interests": {"abc": "yes"}}, "interests.abc"),
    ):
        problem = assert_problem(api.client.patch(url, json=patch), 400, "Invalid Resource")
        assert field in error_fields(problem), problem
    assert_problem(api.client.patch(url, json={"email_address": "bad"}), 400, "Invalid Resource")
    assert account_state(services, api.account_id) == before
    assert_problem(api.client.patch(members_url(list_id, md5("x@example.com")), json={}), 404)


def test_delete_archives(api: ApiUser, list_id: str) -> None:
    created = add_member(api, list_id, "archive.me@example.com")
    url = members_url(list_id, created["id"])
    response = api.client.delete(url)
    assert response.status_code == 204
    assert response.content == b""
    body = assert_json(api.client.get(url))
    assert body["status"] == "archived"
    archived = assert_json(api.client.get(members_url(list_id), params={"status": "archived"}))
    assert [m["id"] for m in archived["members"]] == [created["id"]]
    assert_problem(api.client.delete(url), 404)
    # An archived address can be added again.
    again = add_member(api, list_id, "archive.me@example.com", status="pending")
    assert (again["status"], again["web_id"]) == ("pending", created["web_id"])


FORGOTTEN_DETAIL = (
    "{} was permanently deleted and cannot be re-imported. "
    "The contact must re-subscribe to get back on the list."
)


def test_delete_permanent_then_readd_is_forgotten(api: ApiUser, list_id: str) -> None:
    email = "forget.me@example.com"
    created = add_member(api, list_id, email, merge_fields={"FNAME": "Secret"})
    response = api.client.post(members_url(list_id, created["id"]) + "/actions/delete-permanent")
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(api.client.get(members_url(list_id, email)), 404)
    listing = assert_json(api.client.get(members_url(list_id)))
    assert listing["total_items"] == 0 and listing["members"] == []

    response = api.client.post(
        members_url(list_id), json={"email_address": email, "status": "subscribed"}
    )
    problem = assert_problem(response, 400, "Forgotten Email Not Subscribed")
    assert problem["detail"] == FORGOTTEN_DETAIL.format(email)
    for key in (email, md5(email)):
        response = api.client.put(
            members_url(list_id, key), json={"email_address": email, "status_if_new": "subscribed"}
        )
        problem = assert_problem(response, 400, "Forgotten Email Not Subscribed")
        assert problem["detail"] == FORGOTTEN_DETAIL.format(email)
    assert_problem(api.client.patch(members_url(list_id, email), json={}), 404)
    assert_problem(api.client.delete(members_url(list_id, email)), 404)
    assert_problem(api.client.post(members_url(list_id, email) + "/actions/delete-permanent"), 404)


def test_delete_permanent_keeps_nothing_personal(
    api: ApiUser, list_id: str, services: Services
) -> None:
    email = "private.person@example.com"
    created = add_member(api, list_id, email, merge_fields={"FNAME": "Private"}, tags=["secret"])
    api.client.post(members_url(list_id, created["id"]) + "/actions/delete-permanent")
    stored = repr(account_state(services, api.account_id)["members"])
    assert "private.person" not in stored and "Private" not in stored


def test_delete_permanent_unknown_member(api: ApiUser, list_id: str) -> None:
    url = members_url(list_id, md5("ghost@example.com")) + "/actions/delete-permanent"
    assert_problem(api.client.post(url), 404, "Resource Not Found")


def test_member_routes_on_unknown_list(api: ApiUser) -> None:
    url = members_url("0123456789")
    assert_problem(api.client.get(url), 404)
    assert_problem(
        api.client.post(url, json={"email_address": "a@example.com", "status": "subscribed"}), 404
    )
    assert_problem(api.client.put(url + "/a@example.com", json={"status": "subscribed"}), 404)
