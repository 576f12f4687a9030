"""Issue 15 at the HTTP edge: the archive's name, paths with control characters, method
override, 405 with `Allow`, the `describedBy` link of problems, forced errors only for a
valid key, and `fields` / `exclude_fields` that fail as the real service's do."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conveyor.runtime.embedded import EmbeddedRuntime
from tests.api.fidelity import BatchCaller, Caller, operation
from tests.api.support import assert_json, assert_problem, error_fields
from tests.batches.support import download, get_batch, submit
from tests.conftest import LIST_BODY, ApiUser

DESCRIBED_BY = (
    '<http://testserver/schema/3.0/Definitions/ProblemDetailDocument.json>; rel="describedBy"'
)


def new_list(user: ApiUser) -> str:
    return str(assert_json(user.client.post("/3.0/lists", json=LIST_BODY))["id"])


def add(user: ApiUser, list_id: str, email: str, **fields: Any) -> dict[str, Any]:
    body = {"email_address": email, "status": "subscribed", **fields}
    return dict(assert_json(user.client.post(f"/3.0/lists/{list_id}/members", json=body)))


# --- 1. the archive is named <id>-response.tar.gz ------------------------------------------


def test_response_body_url_ends_in_the_archive_name(
    batch_api: ApiUser, runtime: EmbeddedRuntime
) -> None:
    batch = submit(batch_api.client, [{"method": "GET", "path": "/ping"}])
    runtime.join()
    url = get_batch(batch_api.client, batch["id"])["response_body_url"]
    parts = urlsplit(url)
    # What client code in the wild does to find the batch id again.
    found = re.search(r"(\w+)-response.tar.gz", parts.path)
    assert found is not None and found.group(1) == batch["id"], url
    assert parts.path == f"/3.0/batches/{batch['id']}-response.tar.gz"
    assert set(parse_qs(parts.query)) == {"expires", "signature"}
    response = download(batch_api.client, url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/gzip"
    # The signature is still the credential: the same name without it is refused.
    assert_problem(download(batch_api.client, parts.path), 403)


# --- D3. a path holding a control character is not found ----------------------------------


@pytest.mark.parametrize("character", ["%0A", "%0D", "%00", "%09", "%7F"])
def test_control_character_in_the_path_is_not_found(
    api: ApiUser, list_id: str, character: str
) -> None:
    members = f"/3.0/lists/{list_id}/members"
    before = assert_json(api.client.get("/3.0/lists"))["total_items"]
    assert_problem(api.client.post(f"/3.0/lists/{character}", json=LIST_BODY), 404)
    assert_problem(api.client.get(f"/3.0/lists/{character}"), 404)
    assert_problem(api.client.get(f"/3.0/lists{character}"), 404)
    assert_problem(api.client.get(f"/3.0{character}"), 404)
    assert_problem(api.client.get(f"/3.0/batches{character}"), 404)
    body = {"email_address": "nl@example.com", "status": "subscribed"}
    assert_problem(api.client.post(f"{members}/{character}", json=body), 404)
    assert assert_json(api.client.get("/3.0/lists"))["total_items"] == before
    assert assert_json(api.client.get(members))["total_items"] == 0


# --- 3. X-HTTP-Method-Override ---------------------------------------------------------------


def test_post_with_a_method_override_acts_as_that_method(api: ApiUser, list_id: str) -> None:
    member = add(api, list_id, "over@example.com")
    url = f"/3.0/lists/{list_id}/members/{member['id']}"
    patched = api.client.post(
        url,
        json={"merge_fields": {"FNAME": "Over"}},
        headers={"X-HTTP-Method-Override": "PATCH"},
    )
    assert assert_json(patched)["merge_fields"]["FNAME"] == "Over"
    put = api.client.post(
        url,
        json={"email_address": "over@example.com", "status": "unsubscribed"},
        headers={"X-HTTP-Method-Override": "put"},
    )
    assert assert_json(put)["status"] == "unsubscribed"
    renamed = api.client.post(
        f"/3.0/lists/{list_id}",
        json={"name": "Renamed"},
        headers={"X-HTTP-Method-Override": "PATCH"},
    )
    assert assert_json(renamed)["name"] == "Renamed"
    gone = api.client.post(url, headers={"X-HTTP-Method-Override": "DELETE"})
    assert gone.status_code == 204
    assert assert_json(api.client.get(url))["status"] == "archived"


def test_method_override_reaches_the_batch_endpoints(
    batch_api: ApiUser, runtime: EmbeddedRuntime
) -> None:
    batch = submit(batch_api.client, [{"method": "GET", "path": "/ping"}])
    runtime.join()
    url = f"/3.0/batches/{batch['id']}"
    response = batch_api.client.post(url, headers={"X-HTTP-Method-Override": "DELETE"})
    assert response.status_code == 204, response.text
    assert_problem(batch_api.client.get(url), 404)


@pytest.mark.parametrize(
    ("method", "override"),
    [("PUT", "PATCH"), ("PATCH", "PUT"), ("GET", "DELETE"), ("POST", "FETCH"), ("POST", "")],
)
def test_an_invalid_method_override_is_422(
    api: ApiUser, list_id: str, method: str, override: str
) -> None:
    member = add(api, list_id, "keep@example.com", merge_fields={"FNAME": "Keep"})
    url = f"/3.0/lists/{list_id}/members/{member['id']}"
    response = api.client.request(
        method,
        url,
        json={"merge_fields": {"FNAME": "Changed"}, "status": "unsubscribed"},
        headers={"X-HTTP-Method-Override": override},
    )
    problem = assert_problem(response, 422, "Invalid Method Override")
    assert "X-HTTP-Method-Override" in problem["detail"]
    after = assert_json(api.client.get(url))
    assert after["merge_fields"]["FNAME"] == "Keep" and after["status"] == "subscribed"


# --- 11. 405 answers carry Allow, /batches included -------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/3.0/lists", "GET, POST"),
        ("DELETE", "/3.0/ping", "GET"),
        ("PATCH", "/3.0/lists/{list_id}/members", "GET, POST"),
        ("PUT", "/3.0/lists/{list_id}", "GET, POST, PATCH, DELETE"),
        ("PUT", "/3.0/batches", "GET, POST"),
        ("PATCH", "/3.0/batches", "GET, POST"),
        ("DELETE", "/3.0/batches", "GET, POST"),
        ("PUT", "/3.0/batches/0123456789", "GET, DELETE"),
        ("POST", "/3.0/batches/0123456789", "GET, DELETE"),
        ("PUT", "/3.0/batch-webhooks", "GET, POST"),
        ("PUT", "/3.0/batch-webhooks/0123456789", "GET, PATCH, DELETE"),
    ],
)
def test_405_names_the_allowed_methods(
    api: ApiUser, list_id: str, method: str, path: str, allow: str
) -> None:
    response = api.client.request(method, path.format(list_id=list_id))
    problem = assert_problem(response, 405, "Method Not Allowed")
    assert response.headers["allow"] == allow
    assert "Allow header" in problem["detail"]


def test_405_inside_a_batch(call: Caller, batch_api: ApiUser) -> None:
    list_id = new_list(batch_api)
    answer = call("PATCH", f"/lists/{list_id}/members")
    answer.problem(405, "Method Not Allowed")
    if call.via == "http":
        assert answer.headers["allow"] == "GET, POST"


def test_batches_without_a_key_is_still_401(app_client: Any) -> None:
    assert_problem(app_client.put("/3.0/batches"), 401, "API Key Missing")


# --- 11. problems carry Link: <…>; rel="describedBy" ----------------------------------------


def test_every_problem_links_its_schema(
    api: ApiUser, list_id: str, batch_api: ApiUser, runtime: EmbeddedRuntime
) -> None:
    client = api.client
    answers = [
        client.get("/3.0/lists/nope"),
        client.get("/3.0/lists", auth=None),
        client.post("/3.0/lists", json={}),
        client.post("/3.0/lists", content=b"{", headers={"Content-Type": "application/json"}),
        client.delete("/3.0/ping"),
        client.put("/3.0/batches"),
        client.get("/3.0/lists", params={"fields": "nope"}),
        client.put("/3.0/ping", headers={"X-HTTP-Method-Override": "GET"}),
        client.get("/3.0/lists/%0A"),
        client.get("/elsewhere"),
        client.get("/3.0/ping", headers={"X-Trigger-Error": "Forbidden"}),
        client.get("/3.0/batches/0123456789-response.tar.gz", params={"expires": "1"}),
    ]
    for response in answers:
        assert response.status_code >= 400, response.text
        assert response.headers["link"] == DESCRIBED_BY, (response.request.url, response.headers)
    assert "link" not in client.get("/3.0/ping").headers


# --- 11. X-Trigger-Error is for a valid key only --------------------------------------------


def test_trigger_error_needs_a_valid_key(api: ApiUser) -> None:
    forced = {"X-Trigger-Error": "InternalServerError"}
    assert_problem(api.client.get("/3.0/ping", headers=forced, auth=None), 401, "API Key Missing")
    bad_key = ("x", "0" * 32 + "-us1")
    response = api.client.get("/3.0/ping", headers=forced, auth=bad_key)
    assert_problem(response, 401, "API Key Invalid")
    assert_problem(api.client.get("/3.0/ping", headers=forced), 500, "InternalServerError")


# --- 10. fields / exclude_fields fail as the real service's do ------------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/lists", {"fields": "lists.id,nope"}),
        ("/lists", {"fields": "id"}),  # a collection's names start with its key
        ("/lists", {"exclude_fields": "lists.stats.nope"}),
        ("/lists/{list_id}", {"fields": "name.first"}),
        ("/lists/{list_id}", {"fields": "id", "exclude_fields": "name"}),
        ("/lists/{list_id}/members/{hash}", {"fields": "merge_fields.NOPE"}),
        ("/lists/{list_id}/members/{hash}", {"exclude_fields": "email"}),
        ("/lists/{list_id}/merge-fields", {"fields": "merge_fields.tag..name"}),
    ],
)
def test_unknown_field_names_and_both_parameters_are_422(
    call: Caller, batch_api: ApiUser, path: str, params: dict[str, str]
) -> None:
    list_id = new_list(batch_api)
    member = add(batch_api, list_id, "f@example.com")
    url = path.format(list_id=list_id, hash=member["id"])
    answer = call("GET", url, params={**params, "count": "10"} if "hash" not in path else params)
    answer.problem(422, "Requested Fields Invalid")
    assert answer.error_fields() <= {"fields", "exclude_fields"} and answer.error_fields()


def test_known_field_names_still_select(call: Caller, batch_api: ApiUser) -> None:
    list_id = new_list(batch_api)
    member = add(batch_api, list_id, "f@example.com", merge_fields={"FNAME": "Fi"})
    one = call("GET", f"/lists/{list_id}/members/{member['id']}", params={"fields": "id"})
    assert one.json() == {"id": member["id"]}
    page = call(
        "GET",
        f"/lists/{list_id}/members",
        params={"fields": "members.merge_fields.FNAME,total_items", "count": 5},
    )
    assert page.json() == {"members": [{"merge_fields": {"FNAME": "Fi"}}], "total_items": 1}
    empty = call(
        "GET",
        f"/lists/{list_id}/members",
        params={"fields": "members.anything,total_items", "status": "cleaned", "count": 5},
    )
    # An empty page has nothing to judge a name below `members` by.
    assert empty.json() == {"members": [], "total_items": 0}


def test_bad_fields_on_a_paged_batch_get(batch_api: ApiUser, runtime: EmbeddedRuntime) -> None:
    list_id = new_list(batch_api)
    add(batch_api, list_id, "p@example.com")
    caller = BatchCaller(batch_api.client, runtime.join)
    # No `count`: the batch pages through the collection and selects on each page.
    bad, good = caller.many(
        [
            operation("GET", f"/lists/{list_id}/members", params={"fields": "members.nope"}),
            operation("GET", f"/lists/{list_id}/members", params={"fields": "total_items"}),
        ]
    )
    bad.problem(422, "Requested Fields Invalid")
    assert good.json() == {"total_items": 1}


def test_bad_fields_on_the_batch_endpoints(batch_api: ApiUser) -> None:
    client = batch_api.client
    assert_problem(client.get("/3.0/batches", params={"fields": "nope"}), 422)
    problem = assert_problem(
        client.get("/3.0/batch-webhooks", params={"fields": "total_items", "exclude_fields": "x"}),
        422,
        "Requested Fields Invalid",
    )
    assert error_fields(problem) == {"exclude_fields"}
    assert assert_json(client.get("/3.0/batches", params={"fields": "total_items"})) == {
        "total_items": 0
    }
