"""The official Python clients against a real `conveyor serve` process.

Both are pointed at the server as docs/compatibility.md ("The official clients") describes;
nothing else about them is changed. Anything they cannot do here is a deviation of Conveyor
from the real API.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import mailchimp_marketing
import pytest
from mailchimp3 import MailChimp
from mailchimp3.mailchimpclient import MailChimpError
from mailchimp_marketing.api_client import ApiClientError

from tests.conftest import LIST_BODY
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

PING = {"health_status": "Everything's Chimpy!"}


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


# -- mailchimp-marketing ------------------------------------------------------------------


def marketing_client(server: ServerProcess, key: str | None = None) -> Any:
    client = mailchimp_marketing.Client()
    client.set_config({"api_key": key or server.key, "server": "us1"})
    client.api_client.host = server.api_url
    return client


def marketing_problem(error: ApiClientError) -> dict[str, Any]:
    """The problem document of a failed call (the client hands it over as text)."""
    text = error.text
    document: dict[str, Any] = json.loads(text) if isinstance(text, str) else text
    assert document["status"] == error.status_code
    assert set(document) >= {"type", "title", "status", "detail", "instance"}
    return document


def test_marketing_ping_and_root(server: ServerProcess) -> None:
    client = marketing_client(server)
    assert client.ping.get() == PING
    root = client.root.get_root()
    assert root["account_id"]
    assert root["total_subscribers"] == 0


def test_marketing_member_lifecycle(server: ServerProcess) -> None:
    client = marketing_client(server)
    list_id = client.lists.create_list(LIST_BODY)["id"]
    email = "Ann.Smith@Example.org"

    added = client.lists.add_list_member(
        list_id,
        {"email_address": email, "status": "subscribed", "merge_fields": {"FNAME": "Ann"}},
    )
    assert added["id"] == md5(email)
    assert isinstance(added["web_id"], int)
    assert added["email_address"] == email
    assert added["merge_fields"]["FNAME"] == "Ann"
    assert added["list_id"] == list_id

    with pytest.raises(ApiClientError) as exists:
        client.lists.add_list_member(list_id, {"email_address": email, "status": "subscribed"})
    assert exists.value.status_code == 400
    problem = marketing_problem(exists.value)
    assert problem["title"] == "Member Exists"
    assert email in problem["detail"]

    # PUT upserts: an existing member keeps its id and web_id, status_if_new is ignored.
    upserted = client.lists.set_list_member(
        list_id,
        md5(email),
        {
            "email_address": email,
            "status_if_new": "pending",
            "merge_fields": {"LNAME": "Smith"},
        },
    )
    assert (upserted["id"], upserted["web_id"]) == (added["id"], added["web_id"])
    assert upserted["status"] == "subscribed"
    assert upserted["merge_fields"]["FNAME"] == "Ann"
    assert upserted["merge_fields"]["LNAME"] == "Smith"
    # ... and creates a new one, with status_if_new.
    created = client.lists.set_list_member(
        list_id,
        md5("bob@example.org"),
        {"email_address": "bob@example.org", "status_if_new": "pending"},
    )
    assert created["status"] == "pending"
    assert created["web_id"] != added["web_id"]

    patched = client.lists.update_list_member(
        list_id, md5(email), {"merge_fields": {"FNAME": "Anna"}, "vip": True}
    )
    assert patched["merge_fields"]["FNAME"] == "Anna"
    assert patched["vip"] is True
    assert client.lists.get_list_member(list_id, email)["merge_fields"]["FNAME"] == "Anna"

    # Tags: POST answers 204 (the client returns the bare response), GET lists them.
    response = client.lists.update_list_member_tags(
        list_id,
        md5(email),
        {"tags": [{"name": "vip", "status": "active"}, {"name": "beta", "status": "active"}]},
    )
    assert response.status_code == 204
    client.lists.update_list_member_tags(
        list_id, md5(email), {"tags": [{"name": "beta", "status": "inactive"}]}
    )
    tags = client.lists.get_list_member_tags(list_id, md5(email))
    assert [tag["name"] for tag in tags["tags"]] == ["vip"]
    assert tags["total_items"] == 1
    assert client.lists.get_list_member(list_id, md5(email))["tags_count"] == 1

    # Merge fields: the defaults, a new one, and a member using it.
    defaults = client.lists.get_list_merge_fields(list_id, count=100)
    assert {"FNAME", "LNAME"} <= {field["tag"] for field in defaults["merge_fields"]}
    field = client.lists.add_list_merge_field(
        list_id, {"name": "Favourite colour", "type": "text", "tag": "COLOUR"}
    )
    assert field["tag"] == "COLOUR"
    assert client.lists.get_list_merge_field(list_id, field["merge_id"])["name"] == (
        "Favourite colour"
    )
    with_colour = client.lists.update_list_member(
        list_id, md5(email), {"merge_fields": {"COLOUR": "green"}}
    )
    assert with_colour["merge_fields"]["COLOUR"] == "green"

    # DELETE archives: hidden from the default listing, visible with status=archived.
    assert client.lists.delete_list_member(list_id, md5(email)).status_code == 204
    archived = client.lists.get_list_members_info(list_id, status="archived")
    assert [m["email_address"] for m in archived["members"]] == [email]
    assert archived["members"][0]["status"] == "archived"

    # delete-permanent erases; adding the address again is refused.
    response = client.lists.delete_list_member_permanent(list_id, md5("bob@example.org"))
    assert response.status_code == 204
    with pytest.raises(ApiClientError) as forgotten:
        client.lists.add_list_member(
            list_id, {"email_address": "bob@example.org", "status": "subscribed"}
        )
    assert forgotten.value.status_code == 400
    assert marketing_problem(forgotten.value)["title"] == "Forgotten Email Not Subscribed"
    with pytest.raises(ApiClientError) as gone:
        client.lists.get_list_member(list_id, md5("bob@example.org"))
    assert gone.value.status_code == 404


def test_marketing_paging_and_field_selection(server: ServerProcess) -> None:
    client = marketing_client(server)
    list_id = client.lists.create_list(LIST_BODY)["id"]
    emails = [f"user{i:02d}@example.org" for i in range(25)]
    result = client.lists.batch_list_members(
        list_id, {"members": [{"email_address": e, "status": "subscribed"} for e in emails]}
    )
    assert result["total_created"] == 25
    assert result["error_count"] == 0

    first = client.lists.get_list_members_info(list_id)
    assert first["total_items"] == 25
    assert len(first["members"]) == 10  # the default count
    last = client.lists.get_list_members_info(list_id, count=10, offset=20)
    assert [m["email_address"] for m in last["members"]] == emails[20:]
    seen = [
        m["email_address"]
        for offset in range(0, 25, 7)
        for m in client.lists.get_list_members_info(list_id, count=7, offset=offset)["members"]
    ]
    assert seen == emails

    narrow = client.lists.get_list_members_info(
        list_id, fields=["members.email_address", "members.merge_fields.FNAME", "total_items"]
    )
    assert set(narrow) == {"members", "total_items"}
    assert narrow["members"][0] == {"email_address": emails[0], "merge_fields": {"FNAME": ""}}

    trimmed = client.lists.get_list_members_info(
        list_id, count=1, exclude_fields=["members._links", "members.location", "_links"]
    )
    assert "_links" not in trimmed
    assert "_links" not in trimmed["members"][0]
    assert "location" not in trimmed["members"][0]
    assert trimmed["members"][0]["email_address"] == emails[0]

    one = client.lists.get_list(list_id, fields=["id", "name", "stats.member_count"])
    assert one == {"id": list_id, "name": "Newsletter", "stats": {"member_count": 25}}


def test_marketing_errors(server: ServerProcess) -> None:
    client = marketing_client(server)
    with pytest.raises(ApiClientError) as missing:
        client.lists.get_list("0123456789")
    assert missing.value.status_code == 404
    assert marketing_problem(missing.value)["title"] == "Resource Not Found"

    wrong = marketing_client(server, key="0" * 32 + "-us1")
    with pytest.raises(ApiClientError) as unauthorized:
        wrong.ping.get()
    assert unauthorized.value.status_code == 401
    assert marketing_problem(unauthorized.value)["title"] == "API Key Invalid"

    list_id = client.lists.create_list(LIST_BODY)["id"]
    with pytest.raises(ApiClientError) as fake:
        client.lists.add_list_member(
            list_id, {"email_address": "nobody@example.invalid", "status": "subscribed"}
        )
    assert fake.value.status_code == 400
    assert marketing_problem(fake.value)["title"] == "Invalid Resource"


# -- mailchimp3 ---------------------------------------------------------------------------


def mc3_client(server: ServerProcess, key: str | None = None) -> Any:
    client = MailChimp(mc_api=key or server.key)
    client.base_url = server.api_url + "/"
    return client


def mc3_problem(error: MailChimpError) -> dict[str, Any]:
    info: dict[str, Any] = error.args[0]
    document = {name: value for name, value in info.items() if name != "response"}
    assert info["response"].status_code == document["status"]
    assert info["response"].headers["content-type"].startswith("application/problem+json")
    assert set(document) >= {"type", "title", "status", "detail", "instance"}
    return document


def test_mailchimp3_ping_and_root(server: ServerProcess) -> None:
    client = mc3_client(server)
    assert client.ping.get() == PING
    assert client.root.get()["account_id"]


def test_mailchimp3_member_lifecycle(server: ServerProcess) -> None:
    client = mc3_client(server)
    list_id = client.lists.create(copy.deepcopy(LIST_BODY))["id"]
    assert client.lists.get(list_id)["name"] == "Newsletter"
    email = "Cleo.Jones@Example.com"

    added = client.lists.members.create(list_id, {"email_address": email, "status": "subscribed"})
    assert added["id"] == md5(email)
    assert isinstance(added["web_id"], int)

    with pytest.raises(MailChimpError) as exists:
        client.lists.members.create(list_id, {"email_address": email, "status": "subscribed"})
    problem = mc3_problem(exists.value)
    assert (problem["status"], problem["title"]) == (400, "Member Exists")

    upserted = client.lists.members.create_or_update(
        list_id,
        email,  # mailchimp3 hashes an address itself
        {"email_address": email, "status_if_new": "subscribed", "merge_fields": {"FNAME": "Cleo"}},
    )
    assert (upserted["id"], upserted["web_id"]) == (added["id"], added["web_id"])
    assert upserted["merge_fields"]["FNAME"] == "Cleo"

    patched = client.lists.members.update(list_id, md5(email), {"status": "unsubscribed"})
    assert patched["status"] == "unsubscribed"

    assert (
        client.lists.members.tags.update(
            list_id, md5(email), {"tags": [{"name": "friends", "status": "active"}]}
        )
        is None  # 204
    )
    tags = client.lists.members.tags.all(list_id, md5(email))
    assert [tag["name"] for tag in tags["tags"]] == ["friends"]

    field = client.lists.merge_fields.create(list_id, {"name": "Score", "type": "number"})
    assert field["type"] == "number"
    every = client.lists.merge_fields.all(list_id, get_all=True)
    assert field["tag"] in {f["tag"] for f in every["merge_fields"]}
    updated_field = client.lists.merge_fields.update(list_id, field["merge_id"], {"name": "Points"})
    assert updated_field["name"] == "Points"
    with pytest.raises(MailChimpError) as bad_number:
        client.lists.members.update(list_id, md5(email), {"merge_fields": {field["tag"]: "x"}})
    problem = mc3_problem(bad_number.value)
    assert problem["title"] == "Invalid Resource"
    assert problem["errors"][0]["field"] == field["tag"]

    assert client.lists.members.delete(list_id, md5(email)) is None  # archived, 204
    assert client.lists.members.get(list_id, md5(email))["status"] == "archived"
    # An archived member comes back with POST.
    revived = client.lists.members.create(list_id, {"email_address": email, "status": "subscribed"})
    assert revived["status"] == "subscribed"
    assert revived["web_id"] == added["web_id"]

    assert client.lists.members.delete_permanent(list_id, md5(email)) is None
    with pytest.raises(MailChimpError) as forgotten:
        client.lists.members.create(list_id, {"email_address": email, "status": "subscribed"})
    problem = mc3_problem(forgotten.value)
    assert (problem["status"], problem["title"]) == (400, "Forgotten Email Not Subscribed")
    with pytest.raises(MailChimpError) as upsert_forgotten:
        client.lists.members.create_or_update(
            list_id, md5(email), {"email_address": email, "status_if_new": "subscribed"}
        )
    assert mc3_problem(upsert_forgotten.value)["title"] == "Forgotten Email Not Subscribed"


def test_mailchimp3_paging_and_field_selection(server: ServerProcess) -> None:
    client = mc3_client(server)
    list_id = client.lists.create(copy.deepcopy(LIST_BODY))["id"]
    emails = [f"reader{i:02d}@example.net" for i in range(23)]
    for email in emails:
        client.lists.members.create(list_id, {"email_address": email, "status": "subscribed"})

    # get_all pages with count/offset until total_items is reached.
    everything = client.lists.members.all(list_id, get_all=True, count=5)
    assert [m["email_address"] for m in everything["members"]] == emails
    page = client.lists.members.all(list_id, count=5, offset=20)
    assert [m["email_address"] for m in page["members"]] == emails[20:]
    assert page["total_items"] == 23

    narrow = client.lists.members.all(
        list_id, get_all=True, count=10, fields="members.id,members.web_id"
    )
    assert set(narrow) == {"members", "total_items"}  # mailchimp3 adds total_items itself
    assert narrow["members"][0] == {
        "id": md5(emails[0]),
        "web_id": narrow["members"][0]["web_id"],
    }
    one = client.lists.members.get(list_id, md5(emails[3]), exclude_fields="_links,tags")
    assert "_links" not in one
    assert "tags" not in one
    assert one["email_address"] == emails[3]


def test_mailchimp3_errors(server: ServerProcess) -> None:
    client = mc3_client(server)
    with pytest.raises(MailChimpError) as missing:
        client.lists.members.get("0123456789", md5("a@example.org"))
    problem = mc3_problem(missing.value)
    assert (problem["status"], problem["title"]) == (404, "Resource Not Found")

    with pytest.raises(MailChimpError) as unauthorized:
        mc3_client(server, key="f" * 32 + "-us1").lists.all()
    problem = mc3_problem(unauthorized.value)
    assert (problem["status"], problem["title"]) == (401, "API Key Invalid")
