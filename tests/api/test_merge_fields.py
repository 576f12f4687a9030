"""Merge fields: CRUD, and their rules applied to members."""

from __future__ import annotations

from typing import Any

from conveyor.composition import Services
from tests.api.spec import assert_shape
from tests.api.support import account_state, add_member, assert_json, assert_problem, error_fields
from tests.conftest import ApiUser


def fields_url(list_id: str, merge_id: int | str | None = None) -> str:
    url = f"/3.0/lists/{list_id}/merge-fields"
    return url if merge_id is None else f"{url}/{merge_id}"


def create_field(api: ApiUser, list_id: str, **body: Any) -> dict[str, Any]:
    return dict(assert_json(api.client.post(fields_url(list_id), json=body)))


def test_create_get_patch_delete(api: ApiUser, list_id: str) -> None:
    created = create_field(
        api, list_id, name="Company", type="text", tag="company", help_text="Where you work"
    )
    assert_shape(created, schema="ListsMergeFieldsMergeFields")
    assert created["tag"] == "COMPANY"
    assert created["merge_id"] == 6  # after the five defaults
    assert (created["type"], created["required"], created["public"]) == ("text", False, True)
    assert created["list_id"] == list_id
    rels = {link["rel"]: link["method"] for link in created["_links"]}
    assert rels["self"] == "GET" and rels["update"] == "PATCH" and rels["delete"] == "DELETE"

    url = fields_url(list_id, created["merge_id"])
    assert assert_json(api.client.get(url)) == created

    patched = assert_json(api.client.patch(url, json={"name": "Employer", "required": True}))
    assert_shape(patched, schema="ListsMergeFieldsMergeFields")
    assert (patched["name"], patched["required"], patched["tag"]) == ("Employer", True, "COMPANY")
    assert patched["help_text"] == "Where you work"

    response = api.client.delete(url)
    assert response.status_code == 204 and response.content == b""
    assert_problem(api.client.get(url), 404)
    assert_problem(api.client.delete(url), 404)
    assert_problem(api.client.patch(url, json={"name": "x"}), 404)


def test_collection_paging_and_shape(api: ApiUser, list_id: str) -> None:
    create_field(api, list_id, name="Extra", type="number")
    body = assert_json(api.client.get(fields_url(list_id)))
    assert_shape(body, operation=("GET", "/lists/{list_id}/merge-fields"))
    assert body["total_items"] == 6 and body["list_id"] == list_id
    body = assert_json(api.client.get(fields_url(list_id), params={"count": 2, "offset": 4}))
    assert [field["tag"] for field in body["merge_fields"]] == ["BIRTHDAY", "EXTRA"]


def test_tag_is_derived_from_the_name(api: ApiUser, list_id: str) -> None:
    assert create_field(api, list_id, name="Favourite colour", type="text")["tag"] == "FAVOURITEC"
    assert create_field(api, list_id, name="!!!", type="text")["tag"].startswith("MMERGE")


def test_choices(api: ApiUser, list_id: str) -> None:
    body = create_field(
        api, list_id, name="Size", type="dropdown", options={"choices": ["S", "M", "L"]}
    )
    assert body["options"]["choices"] == ["S", "M", "L"]


def test_bad_merge_fields_store_nothing(api: ApiUser, list_id: str, services: Services) -> None:
    create_field(api, list_id, name="Taken", type="text", tag="TAKEN")
    before = account_state(services, api.account_id)
    for body, field in (
        ({"name": "x", "type": "colour"}, "type"),
        ({"type": "text"}, "name"),
        ({"name": "", "type": "text"}, "name"),
        ({"name": "x", "type": "text", "tag": "TOOLONGATAG"}, "tag"),
        ({"name": "x", "type": "text", "tag": "bad tag"}, "tag"),
        ({"name": "x", "type": "text", "tag": "taken"}, "tag"),
        ({"name": "x", "type": "text", "required": "yes"}, "required"),
        ({"name": "x", "type": "text", "display_order": "1"}, "display_order"),
        ({"name": "x", "type": "text", "options": {"choices": "a,b"}}, "options.choices"),
    ):
        problem = assert_problem(
            api.client.post(fields_url(list_id), json=body), 400, "Invalid Resource"
        )
        assert field in error_fields(problem), (body, problem)
    url = fields_url(list_id, 1)
    for patch in ({"tag": "TAKEN"}, {"name": ""}, {"required": 1}):
        assert_problem(api.client.patch(url, json=patch), 400, "Invalid Resource")
    assert account_state(services, api.account_id) == before


def test_unknown_merge_ids(api: ApiUser, list_id: str) -> None:
    for merge_id in ("99", "abc", "-1", "1.0", "99999999999999999999"):
        assert_problem(api.client.get(fields_url(list_id, merge_id)), 404, "Resource Not Found")


def test_required_merge_field_is_enforced_on_new_members(api: ApiUser, list_id: str) -> None:
    create_field(api, list_id, name="Company", type="text", tag="COMPANY", required=True)
    response = api.client.post(
        f"/3.0/lists/{list_id}/members",
        json={"email_address": "nocompany@example.com", "status": "subscribed"},
    )
    problem = assert_problem(response, 400, "Invalid Resource")
    assert error_fields(problem) == {"COMPANY"}
    response = api.client.put(
        f"/3.0/lists/{list_id}/members/nocompany@example.com",
        json={"status_if_new": "subscribed", "merge_fields": {"COMPANY": ""}},
    )
    assert error_fields(assert_problem(response, 400, "Invalid Resource")) == {"COMPANY"}
    assert_problem(api.client.get(f"/3.0/lists/{list_id}/members/nocompany@example.com"), 404)

    member = add_member(api, list_id, "company@example.com", merge_fields={"company": "Acme"})
    assert member["merge_fields"]["COMPANY"] == "Acme"
    # Existing members are not re-checked by a PATCH that leaves the field alone.
    body = assert_json(
        api.client.patch(
            f"/3.0/lists/{list_id}/members/{member['id']}", json={"merge_fields": {"FNAME": "F"}}
        )
    )
    assert body["merge_fields"]["COMPANY"] == "Acme"


def test_merge_values_are_type_checked(api: ApiUser, list_id: str) -> None:
    create_field(api, list_id, name="Age", type="number", tag="AGE")
    url = f"/3.0/lists/{list_id}/members"
    for value in ("old", True, [1], {"n": 1}):
        response = api.client.post(
            url,
            json={
                "email_address": "typed@example.com",
                "status": "subscribed",
                "merge_fields": {"AGE": value},
            },
        )
        assert error_fields(assert_problem(response, 400, "Invalid Resource")) == {"AGE"}
    member = add_member(api, list_id, "typed@example.com", merge_fields={"AGE": 42})
    assert member["merge_fields"]["AGE"] == 42


def test_default_value_applies_to_new_members(api: ApiUser, list_id: str) -> None:
    create_field(api, list_id, name="Source", type="text", tag="SRC", default_value="web")
    member = add_member(api, list_id, "defaulted@example.com")
    assert member["merge_fields"]["SRC"] == "web"


def test_unknown_merge_tags_are_ignored(api: ApiUser, list_id: str) -> None:
    member = add_member(api, list_id, "extra@example.com", merge_fields={"NOPE": "x"})
    assert "NOPE" not in member["merge_fields"]
