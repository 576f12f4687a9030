"""Issue 15 for members: every filter of the collection, skip_merge_validation, merge values
checked as the real service checks them, merge fields shown as the list has them now,
batch subscribe's nulls and answer, tags, links and the SMS status. Each test runs over HTTP
and inside a batch, on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.domain.clock import OffsetClock
from tests.api.fidelity import Caller
from tests.api.spec import declared_properties
from tests.api.support import assert_json, md5
from tests.conftest import LIST_BODY, ApiUser

MERGE_INVALID = "Your merge fields were invalid."


def new_list(user: ApiUser) -> str:
    return str(assert_json(user.client.post("/3.0/lists", json=LIST_BODY))["id"])


def add(user: ApiUser, list_id: str, email: str, **fields: Any) -> dict[str, Any]:
    body = {"email_address": email, "status": "subscribed", **fields}
    return dict(assert_json(user.client.post(f"/3.0/lists/{list_id}/members", json=body)))


def add_field(user: ApiUser, list_id: str, **field: Any) -> dict[str, Any]:
    response = user.client.post(f"/3.0/lists/{list_id}/merge-fields", json=field)
    return dict(assert_json(response))


def emails(answer: Any) -> list[str]:
    return [member["email_address"] for member in answer.json()["members"]]


# --- 4. the member collection's filters -------------------------------------------------------


def test_filters_on_last_changed_and_opt_in_time(
    call: Caller, batch_api: ApiUser, clock: OffsetClock
) -> None:
    list_id = new_list(batch_api)
    early = add(batch_api, list_id, "early@example.com", timestamp_opt="2020-01-01 10:00:00")
    clock.advance(100)
    late = add(batch_api, list_id, "late@example.com", timestamp_opt="2021-06-01T00:00:00Z")
    # Every accepted form is answered in the one form the real service answers with.
    assert early["timestamp_opt"] == "2020-01-01T10:00:00+00:00"
    assert late["timestamp_opt"] == "2021-06-01T00:00:00+00:00"
    assert early["last_changed"] < late["last_changed"]
    members = f"/lists/{list_id}/members"

    def page(**params: Any) -> list[str]:
        return emails(call("GET", members, params={"count": 100, **params}))

    assert page(since_last_changed=late["last_changed"]) == ["late@example.com"]
    assert page(before_last_changed=late["last_changed"]) == ["early@example.com"]
    assert page(since_timestamp_opt="2021-01-01T00:00:00+00:00") == ["late@example.com"]
    assert page(before_timestamp_opt="2021-01-01T00:00:00+00:00") == ["early@example.com"]
    assert page(
        since_timestamp_opt="2019-01-01T00:00:00+00:00",
        before_timestamp_opt="2022-01-01T00:00:00Z",
    ) == ["early@example.com", "late@example.com"]
    # `+00:00` sent unencoded arrives as ` 00:00`; it still means UTC.
    assert page(since_timestamp_opt="2021-01-01T00:00:00 00:00") == ["late@example.com"]


def test_filters_on_vip_email_type_and_unique_email_id(call: Caller, batch_api: ApiUser) -> None:
    list_id = new_list(batch_api)
    vip = add(batch_api, list_id, "vip@example.com", vip=True)
    add(batch_api, list_id, "text@example.com", email_type="text")
    add(batch_api, list_id, "plain@example.com")
    members = f"/lists/{list_id}/members"

    def page(**params: Any) -> list[str]:
        return emails(call("GET", members, params={"count": 100, **params}))

    assert page(vip_only="true") == ["vip@example.com"]
    assert page(vip_only="false") == ["vip@example.com", "text@example.com", "plain@example.com"]
    assert page(email_type="text") == ["text@example.com"]
    assert page(email_type="html") == ["vip@example.com", "plain@example.com"]
    assert page(unique_email_id=vip["unique_email_id"]) == ["vip@example.com"]
    assert page(unique_email_id="0000000000") == []


def test_interest_filters(call: Caller, batch_api: ApiUser) -> None:
    list_id = new_list(batch_api)
    add(batch_api, list_id, "a@example.com", interests={"aa11": True, "bb22": False})
    add(batch_api, list_id, "b@example.com", interests={"bb22": True})
    add(batch_api, list_id, "ab@example.com", interests={"aa11": True, "bb22": True})
    add(batch_api, list_id, "none@example.com")
    members = f"/lists/{list_id}/members"

    def page(match: str) -> list[str]:
        params = {
            "interest_category_id": "cat1",
            "interest_ids": "aa11,bb22",
            "interest_match": match,
            "count": 100,
        }
        return emails(call("GET", members, params=params))

    assert page("any") == ["a@example.com", "b@example.com", "ab@example.com"]
    assert page("all") == ["ab@example.com"]
    assert page("none") == ["none@example.com"]


def test_sorting(call: Caller, batch_api: ApiUser, clock: OffsetClock) -> None:
    list_id = new_list(batch_api)
    add(batch_api, list_id, "b@example.com", timestamp_opt="2022-01-01T00:00:00+00:00")
    clock.advance(10)
    add(batch_api, list_id, "a@example.com", timestamp_opt="2023-01-01T00:00:00+00:00")
    clock.advance(10)
    add(batch_api, list_id, "c@example.com", timestamp_opt="2021-01-01T00:00:00+00:00")
    members = f"/lists/{list_id}/members"

    def page(**params: Any) -> list[str]:
        return [e[0] for e in emails(call("GET", members, params={"count": 100, **params}))]

    assert page() == ["b", "a", "c"]
    assert page(sort_field="timestamp_opt") == ["c", "b", "a"]
    assert page(sort_field="timestamp_opt", sort_dir="DESC") == ["a", "b", "c"]
    assert page(sort_field="last_changed", sort_dir="DESC") == ["c", "a", "b"]
    assert page(sort_field="last_changed", sort_dir="ASC") == ["b", "a", "c"]


def test_archived_members_only_when_asked_for(call: Caller, batch_api: ApiUser) -> None:
    list_id = new_list(batch_api)
    add(batch_api, list_id, "stays@example.com")
    gone = add(batch_api, list_id, "gone@example.com")
    batch_api.client.delete(f"/3.0/lists/{list_id}/members/{gone['id']}")
    members = f"/lists/{list_id}/members"
    default = call("GET", members, params={"count": 100}).json()
    assert [m["email_address"] for m in default["members"]] == ["stays@example.com"]
    assert default["total_items"] == 1
    archived = call("GET", members, params={"status": "archived", "count": 100})
    assert emails(archived) == ["gone@example.com"]


def test_unsubscribed_since(call: Caller, batch_api: ApiUser, clock: OffsetClock) -> None:
    list_id = new_list(batch_api)
    old = add(batch_api, list_id, "old@example.com", status="unsubscribed")
    clock.advance(100)
    add(batch_api, list_id, "new@example.com", status="unsubscribed")
    members = f"/lists/{list_id}/members"
    params = {"status": "unsubscribed", "count": 100}
    since = call("GET", members, params={**params, "unsubscribed_since": old["last_changed"]})
    assert emails(since) == ["old@example.com", "new@example.com"]
    later = call("GET", members, params={**params, "unsubscribed_since": "2999-01-01T00:00:00Z"})
    assert emails(later) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sort_field": "email_address"}, "sort_field"),
        ({"sort_dir": "UP"}, "sort_dir"),
        ({"email_type": "pdf"}, "email_type"),
        ({"vip_only": "maybe"}, "vip_only"),
        ({"since_last_changed": "yesterday"}, "since_last_changed"),
        ({"before_timestamp_opt": "2020-13-01T00:00:00Z"}, "before_timestamp_opt"),
        ({"interest_ids": "aa11"}, "interest_category_id"),
        ({"interest_match": "some", "interest_ids": "a", "interest_category_id": "c"}, None),
        ({"unsubscribed_since": "2020-01-01T00:00:00Z"}, "unsubscribed_since"),
        ({"since_last_campaign": "true"}, "since_last_campaign"),
    ],
)
def test_bad_filters_are_invalid_resource(
    call: Caller, batch_api: ApiUser, params: dict[str, str], field: str | None
) -> None:
    list_id = new_list(batch_api)
    answer = call("GET", f"/lists/{list_id}/members", params={**params, "count": 10})
    answer.problem(400, "Invalid Resource")
    assert field is None or field in answer.error_fields(), answer.body


# --- 2. skip_merge_validation ---------------------------------------------------------------


def test_skip_merge_validation_accepts_a_missing_required_value(
    call: Caller, batch_api: ApiUser
) -> None:
    list_id = new_list(batch_api)
    fname = next(
        field
        for field in assert_json(batch_api.client.get(f"/3.0/lists/{list_id}/merge-fields"))[
            "merge_fields"
        ]
        if field["tag"] == "FNAME"
    )
    batch_api.client.patch(
        f"/3.0/lists/{list_id}/merge-fields/{fname['merge_id']}",
        json={"name": "First Name", "required": True},
    )
    members = f"/lists/{list_id}/members"
    body = {"email_address": "noname@example.com", "status": "subscribed"}
    refused = call("POST", members, json=body)
    assert refused.problem(400, "Invalid Resource")["detail"] == MERGE_INVALID
    assert refused.body["errors"] == [{"field": "FNAME", "message": "Please enter a value"}]
    created = call("POST", members, json=body, params={"skip_merge_validation": "true"})
    assert created.json()["merge_fields"]["FNAME"] == ""
    put_body = {"email_address": "put@example.com", "status_if_new": "subscribed"}
    put_url = f"{members}/{md5('put@example.com')}"
    call("PUT", put_url, json=put_body).problem(400, "Invalid Resource")
    put = call("PUT", put_url, json=put_body, params={"skip_merge_validation": True})
    assert put.json()["status"] == "subscribed"
    # Explicitly false is the default; a value that is no boolean is refused.
    call("POST", members, json={**body, "email_address": "x@example.com"}, params={
        "skip_merge_validation": "false"
    }).problem(400)  # fmt: skip
    wrong = call("POST", members, json=body, params={"skip_merge_validation": "perhaps"})
    assert wrong.problem(400, "Invalid Resource")["errors"][0]["field"] == "skip_merge_validation"
    subscribed = call(
        "POST",
        f"/lists/{list_id}",
        json={"members": [{"email_address": "batch@example.com", "status": "subscribed"}]},
        params={"skip_merge_validation": "true"},
    )
    assert subscribed.json()["total_created"] == 1


# --- 7. merge values checked as the real service checks them --------------------------------


@pytest.fixture
def typed_list(batch_api: ApiUser) -> str:
    """A list with a field of every type that has a rule."""
    list_id = new_list(batch_api)
    for field in (
        {"tag": "DATE", "name": "Date", "type": "date", "options": {"date_format": "MM/DD/YYYY"}},
        {"tag": "DDATE", "name": "EU", "type": "date", "options": {"date_format": "DD/MM/YYYY"}},
        {"tag": "USPHONE", "name": "US phone", "type": "phone", "options": {"phone_format": "US"}},
        {"tag": "SITE", "name": "Site", "type": "url"},
        {"tag": "COLOR", "name": "Colour", "type": "dropdown",
         "options": {"choices": ["red", "green"]}},
        {"tag": "SIZE", "name": "Size", "type": "radio", "options": {"choices": ["S", "M"]}},
        {"tag": "ZIPC", "name": "Zip", "type": "zip"},
        {"tag": "NUM", "name": "Number", "type": "number"},
    ):  # fmt: skip
        add_field(batch_api, list_id, **field)
    return list_id


BIRTHDAY_MESSAGE = "Please enter a month (01-12) and a day (01-31)"


@pytest.mark.parametrize(
    ("tag", "value", "message"),
    [
        ("BIRTHDAY", "13/45", BIRTHDAY_MESSAGE),
        ("BIRTHDAY", "02/30", BIRTHDAY_MESSAGE),
        ("BIRTHDAY", "1990-01-01", BIRTHDAY_MESSAGE),
        ("DATE", "2024-02-30", "Please enter the date"),
        ("DATE", "13/45/2024", "Please enter the date"),
        ("DATE", "tomorrow", "Please enter the date"),
        ("DDATE", "12/31/2024", "Please enter the date"),
        ("PHONE", "call me maybe", "Please enter a valid phone number"),
        ("USPHONE", "555-1234", "Please enter a valid phone number"),
        ("SITE", "not a url", "Please enter a valid URL"),
        ("COLOR", "purple", "Value must be one of: red, green (not purple)"),
        ("SIZE", "XL", "Value must be one of: S, M (not XL)"),
        ("ZIPC", "1234", "Please enter a valid zip code"),
        ("NUM", "ten", "Please enter a number"),
        ("ADDRESS", {"addr1": "1 Main St"}, "Please enter a complete address"),
        ("FNAME", {"nested": "object"}, "Please enter a value"),
    ],
)
def test_an_invalid_merge_value_is_refused_and_nothing_stored(
    call: Caller, batch_api: ApiUser, typed_list: str, tag: str, value: Any, message: str
) -> None:
    members = f"/lists/{typed_list}/members"
    body = {"email_address": "typed@example.com", "status": "subscribed"}
    answer = call("POST", members, json={**body, "merge_fields": {tag: value}})
    assert answer.problem(400, "Invalid Resource")["detail"] == MERGE_INVALID
    assert answer.body["errors"] == [{"field": tag, "message": message}]
    assert assert_json(batch_api.client.get(f"/3.0{members}"))["total_items"] == 0
    # The same value on an existing member leaves it as it was.
    add(batch_api, typed_list, "typed@example.com")
    patched = call("PATCH", f"{members}/{md5('typed@example.com')}", json={
        "merge_fields": {tag: value}
    })  # fmt: skip
    patched.problem(400, "Invalid Resource")
    stored = assert_json(batch_api.client.get(f"/3.0{members}/{md5('typed@example.com')}"))
    assert stored["merge_fields"][tag] == ""


def test_valid_merge_values_are_stored_as_the_real_service_answers_them(
    call: Caller, typed_list: str
) -> None:
    address = {"addr1": "1 Main St", "city": "Springfield", "state": "IL", "zip": "62701"}
    values: dict[str, Any] = {
        "BIRTHDAY": "1/5",
        "DATE": "12/21/1980",
        "DDATE": "31/12/2024",
        "PHONE": "+44 20 7946 0958",
        "USPHONE": "(415) 555-2671",
        "SITE": "example.org/about",
        "COLOR": "green",
        "SIZE": "M",
        "ZIPC": "94107-1234",
        "NUM": 12.5,
        "ADDRESS": address,
    }
    answer = call(
        "POST",
        f"/lists/{typed_list}/members",
        json={"email_address": "ok@example.com", "status": "subscribed", "merge_fields": values},
    )
    merge = answer.json()["merge_fields"]
    assert merge["BIRTHDAY"] == "01/05"
    assert merge["DATE"] == "1980-12-21" and merge["DDATE"] == "2024-12-31"
    assert merge["PHONE"] == "+44 20 7946 0958" and merge["USPHONE"] == "(415) 555-2671"
    assert (merge["SITE"], merge["COLOR"], merge["SIZE"]) == ("example.org/about", "green", "M")
    assert (merge["ZIPC"], merge["NUM"]) == ("94107-1234", 12.5)
    assert merge["ADDRESS"] == {**address, "addr2": "", "country": ""}
    cleared = call(
        "PATCH",
        f"/lists/{typed_list}/members/{md5('ok@example.com')}",
        json={"merge_fields": {"BIRTHDAY": "", "DATE": "", "COLOR": ""}},
    )
    assert [cleared.json()["merge_fields"][t] for t in ("BIRTHDAY", "DATE", "COLOR")] == [""] * 3


# --- 8. members show the list's merge fields as they are now --------------------------------


def test_members_follow_the_lists_merge_fields(call: Caller, batch_api: ApiUser) -> None:
    list_id = new_list(batch_api)
    member = add(batch_api, list_id, "m@example.com", merge_fields={"FNAME": "Ann", "PHONE": "1"})
    assert list(member["merge_fields"]) == ["FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY"]
    fields = f"/3.0/lists/{list_id}/merge-fields"
    url = f"/lists/{list_id}/members/{member['id']}"
    city = add_field(batch_api, list_id, tag="CITY", name="City", type="text")
    assert call("GET", url).json()["merge_fields"]["CITY"] == ""
    phone = next(
        f for f in assert_json(batch_api.client.get(fields))["merge_fields"] if f["tag"] == "PHONE"
    )
    assert batch_api.client.delete(f"{fields}/{phone['merge_id']}").status_code == 204
    assert "PHONE" not in call("GET", url).json()["merge_fields"]
    add_field(batch_api, list_id, tag="PHONE", name="Phone again", type="phone")
    # A field added under a deleted field's tag starts empty.
    assert call("GET", url).json()["merge_fields"]["PHONE"] == ""
    # A renamed tag keeps its values.
    batch_api.client.patch(f"{fields}/{city['merge_id']}", json={"name": "City", "tag": "TOWN"})
    call("PATCH", url, json={"merge_fields": {"TOWN": "Paris"}}).json()
    fname = next(
        f for f in assert_json(batch_api.client.get(fields))["merge_fields"] if f["tag"] == "FNAME"
    )
    batch_api.client.patch(f"{fields}/{fname['merge_id']}", json={"name": "First", "tag": "FIRST"})
    shown = call("GET", url).json()["merge_fields"]
    assert shown["FIRST"] == "Ann" and shown["TOWN"] == "Paris"
    assert "FNAME" not in shown and "CITY" not in shown


# --- 9. batch subscribe takes the spec's nulls and answers its smaller member ------------------


def test_batch_subscribe_takes_nulls_and_answers_the_specs_new_member(
    call: Caller, batch_api: ApiUser
) -> None:
    list_id = new_list(batch_api)
    add(batch_api, list_id, "old@example.com", vip=True)
    body = {
        "members": [
            {
                "email_address": "nulls@example.com",
                "status": None,
                "status_if_new": "subscribed",
                "email_type": None,
                "merge_fields": None,
                "interests": {"aa11": None, "bb22": True},
                "language": None,
                "vip": None,
                "location": {"latitude": None, "longitude": 2.5},
                "ip_signup": None,
                "ip_opt": None,
                "timestamp_signup": None,
                "timestamp_opt": None,
                "tags": None,
            },
            {"email_address": "old@example.com", "status": "subscribed", "location": None},
        ],
        "update_existing": None,
        "sync_tags": None,
    }
    answer = call("POST", f"/lists/{list_id}", json=body).json()
    assert answer["total_created"] == 1 and answer["error_count"] == 1
    assert answer["errors"][0]["error_code"] == "ERROR_CONTACT_EXISTS"  # update_existing: null
    created = answer["new_members"][0]
    assert set(created) == declared_properties("ListsNewMembers") - {"last_note"}
    assert set(created["location"]) == declared_properties("ListsNewMembersLocation")
    assert created["location"]["longitude"] == 2.5 and created["location"]["latitude"] == 0
    assert created["interests"] == {"bb22": True}
    assert created["vip"] is False and created["email_type"] == "html"
    again = call(
        "POST",
        f"/lists/{list_id}",
        json={"members": [{"email_address": "old@example.com", "vip": None}],
              "update_existing": True},
    ).json()  # fmt: skip
    assert again["total_updated"] == 1
    assert set(again["updated_members"][0]) == set(created)
    assert again["updated_members"][0]["vip"] is True  # null changed nothing


# --- 11. tags capped at 50, the SMS status, the real service's links -------------------------


def test_member_answers_tags_sms_status_and_links_as_the_real_service(
    call: Caller, batch_api: ApiUser
) -> None:
    list_id = new_list(batch_api)
    member = add(batch_api, list_id, "tags@example.com")
    url = f"/lists/{list_id}/members/{member['id']}"
    tags = [{"name": f"tag{n:02d}", "status": "active"} for n in range(60)]
    assert call("POST", f"{url}/tags", json={"tags": tags}).status == 204
    shown = call("GET", url).json()
    assert shown["tags_count"] == 60
    assert [tag["name"] for tag in shown["tags"]] == [f"tag{n:02d}" for n in range(50)]
    assert shown["sms_subscription_status"] == ""
    assert shown["full_name"] == ""
    root = "http://testserver/3.0"
    href = f"{root}{url}"
    assert [(link["rel"], link["method"], link["href"]) for link in shown["_links"]] == [
        ("self", "GET", href),
        ("parent", "GET", f"{root}/lists/{list_id}/members"),
        ("update", "PATCH", href),
        ("upsert", "PUT", href),
        ("delete", "DELETE", href),
        ("activity", "GET", f"{href}/activity"),
        ("goals", "GET", f"{href}/goals"),
        ("notes", "GET", f"{href}/notes"),
        ("events", "POST", f"{href}/events"),
        ("delete_permanent", "POST", f"{href}/actions/delete-permanent"),
    ]
    all_tags = call("GET", f"{url}/tags", params={"count": 100}).json()
    assert all_tags["total_items"] == 60 and len(all_tags["tags"]) == 60
