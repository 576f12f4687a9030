"""Issue 15 for lists and merge fields: the list collection's filters, list stats as the
real service keeps them, the default merge fields it creates, the merge field filters, and
a merge field PATCH that must name the field. Over HTTP and inside a batch, on SQLite and
on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.domain.clock import OffsetClock
from tests.api.fidelity import Caller
from tests.api.support import assert_json, assert_problem, error_fields
from tests.conftest import LIST_BODY, ApiUser


def new_list(user: ApiUser, name: str = "Newsletter") -> dict[str, Any]:
    return dict(assert_json(user.client.post("/3.0/lists", json={**LIST_BODY, "name": name})))


def add(user: ApiUser, list_id: str, email: str, status: str = "subscribed") -> dict[str, Any]:
    body = {"email_address": email, "status": status}
    return dict(assert_json(user.client.post(f"/3.0/lists/{list_id}/members", json=body)))


def names(answer: Any) -> list[str]:
    return [item["name"] for item in answer.json()["lists"]]


# --- 5. the list collection's filters ---------------------------------------------------------


def test_list_filters_and_order(call: Caller, batch_api: ApiUser, clock: OffsetClock) -> None:
    first = new_list(batch_api, "First")
    clock.advance(100)
    second = new_list(batch_api, "Second")
    clock.advance(100)
    new_list(batch_api, "Third")
    add(batch_api, second["id"], "Someone@Example.com")

    def page(**params: Any) -> list[str]:
        return names(call("GET", "/lists", params={"count": 100, **params}))

    assert page() == ["First", "Second", "Third"]
    assert page(since_date_created=second["date_created"]) == ["Second", "Third"]
    assert page(before_date_created=second["date_created"]) == ["First"]
    assert page(
        since_date_created=first["date_created"], before_date_created=second["date_created"]
    ) == ["First"]
    assert page(sort_field="date_created", sort_dir="DESC") == ["Third", "Second", "First"]
    assert page(sort_field="date_created", sort_dir="ASC") == ["First", "Second", "Third"]
    assert page(email="someone@example.com") == ["Second"]
    assert page(email="nobody@example.com") == []
    # No list here has sent a campaign or has an ecommerce store.
    assert page(since_campaign_last_sent="2000-01-01T00:00:00+00:00") == []
    assert page(before_campaign_last_sent="2999-01-01T00:00:00+00:00") == []
    assert page(has_ecommerce_store="true") == []
    assert page(has_ecommerce_store="false") == ["First", "Second", "Third"]
    body = call("GET", "/lists", params={"count": 1, "sort_dir": "DESC"}).json()
    assert [item["name"] for item in body["lists"]] == ["Third"] and body["total_items"] == 3


@pytest.mark.parametrize(
    "params",
    [
        {"since_date_created": "last week"},
        {"before_campaign_last_sent": "2020-02-30T00:00:00Z"},
        {"sort_field": "name"},
        {"sort_dir": "sideways"},
        {"has_ecommerce_store": "sometimes"},
    ],
)
def test_bad_list_filters(call: Caller, batch_api: ApiUser, params: dict[str, str]) -> None:
    answer = call("GET", "/lists", params={**params, "count": 10})
    answer.problem(400, "Invalid Resource")
    assert answer.error_fields() == set(params)


# --- 8. list stats --------------------------------------------------------------------------


def test_list_stats_as_the_real_service_keeps_them(
    call: Caller, batch_api: ApiUser, clock: OffsetClock
) -> None:
    created = new_list(batch_api)
    list_id = created["id"]
    stats = created["stats"]
    assert stats["merge_field_count"] == 5
    assert (stats["last_sub_date"], stats["last_unsub_date"]) == ("", "")
    assert "total_contacts" not in stats
    clock.advance(60)
    joined = add(batch_api, list_id, "joined@example.com")
    clock.advance(60)
    left = add(batch_api, list_id, "left@example.com")
    clock.advance(60)
    left = assert_json(
        batch_api.client.patch(
            f"/3.0/lists/{list_id}/members/{left['id']}", json={"status": "unsubscribed"}
        )
    )
    add(batch_api, list_id, "pending@example.com", status="pending")
    batch_api.client.post(
        f"/3.0/lists/{list_id}/merge-fields", json={"name": "City", "type": "text"}
    )
    stats = call("GET", f"/lists/{list_id}").json()["stats"]
    assert stats["merge_field_count"] == 6
    assert stats["last_sub_date"] == joined["timestamp_opt"]
    assert stats["last_unsub_date"] == left["last_changed"]
    assert stats["last_unsub_date"] > stats["last_sub_date"]
    assert (stats["member_count"], stats["unsubscribe_count"]) == (1, 1)
    assert "total_contacts" not in stats
    asked = call("GET", f"/lists/{list_id}", params={"include_total_contacts": "true"})
    assert asked.json()["stats"]["total_contacts"] == 3
    listed = call("GET", "/lists", params={"include_total_contacts": True, "count": 10}).json()
    assert listed["lists"][0]["stats"]["total_contacts"] == 3
    assert listed["lists"][0]["stats"]["merge_field_count"] == 6
    plain = call("GET", "/lists", params={"count": 10}).json()
    assert "total_contacts" not in plain["lists"][0]["stats"]


def test_new_list_has_mailchimps_default_merge_fields(call: Caller, batch_api: ApiUser) -> None:
    list_id = new_list(batch_api)["id"]
    fields = call("GET", f"/lists/{list_id}/merge-fields").json()["merge_fields"]
    shown = [
        (f["merge_id"], f["tag"], f["name"], f["type"], f["public"], f["display_order"])
        for f in fields
    ]
    assert shown == [
        (1, "FNAME", "First Name", "text", True, 2),
        (2, "LNAME", "Last Name", "text", True, 3),
        (3, "ADDRESS", "Address", "address", False, 4),
        (4, "PHONE", "Phone Number", "phone", False, 5),
        (5, "BIRTHDAY", "Birthday", "birthday", False, 6),
    ]
    assert [f["options"] for f in fields] == [
        {"size": 25},
        {"size": 25},
        {"default_country": 164},
        {"phone_format": "none"},
        {"date_format": "MM/DD"},
    ]


# --- 6. merge field filters -----------------------------------------------------------------


def test_merge_field_filters(call: Caller, batch_api: ApiUser) -> None:
    list_id = new_list(batch_api)["id"]
    fields = f"/3.0/lists/{list_id}/merge-fields"
    code = {"tag": "CODE", "name": "Code", "type": "text", "required": True}
    assert_json(batch_api.client.post(fields, json=code))
    assert_json(batch_api.client.post(fields, json={"tag": "WHEN", "name": "When", "type": "date"}))

    def tags(**params: Any) -> list[str]:
        body = call("GET", f"/lists/{list_id}/merge-fields", params={"count": 100, **params})
        listed = body.json()
        assert listed["total_items"] == len(listed["merge_fields"])
        return [field["tag"] for field in listed["merge_fields"]]

    assert tags(type="text") == ["FNAME", "LNAME", "CODE"]
    assert tags(type="date") == ["WHEN"]
    assert tags(type="radio") == []
    assert tags(required="true") == ["CODE"]
    assert tags(required="false") == ["FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY", "WHEN"]
    assert tags(type="text", required="false") == ["FNAME", "LNAME"]
    paged = call(
        "GET", f"/lists/{list_id}/merge-fields", params={"type": "text", "count": 1, "offset": 1}
    ).json()
    assert [f["tag"] for f in paged["merge_fields"]] == ["LNAME"] and paged["total_items"] == 3
    call("GET", f"/lists/{list_id}/merge-fields", params={"required": "yes"}).problem(400)


# --- 11. a merge field PATCH names the field ------------------------------------------------


def test_merge_field_patch_needs_a_name(call: Caller, batch_api: ApiUser) -> None:
    list_id = new_list(batch_api)["id"]
    url = f"/lists/{list_id}/merge-fields/1"
    answer = call("PATCH", url, json={"required": True})
    answer.problem(400, "Invalid Resource")
    assert answer.error_fields() == {"name"}
    field = assert_json(batch_api.client.get(f"/3.0{url}"))
    assert field["required"] is False
    renamed = call("PATCH", url, json={"name": "Given name", "required": True}).json()
    assert (renamed["name"], renamed["required"]) == ("Given name", True)


def test_merge_field_patch_without_a_body_names_the_field(api: ApiUser, list_id: str) -> None:
    response = api.client.patch(f"/3.0/lists/{list_id}/merge-fields/1")
    assert error_fields(assert_problem(response, 400, "Invalid Resource")) == {"name"}
