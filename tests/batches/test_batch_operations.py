"""Per-operation outcomes: problems are results, unsafe paths never run, GETs page."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conveyor.composition import Services
from tests.batches.support import (
    PROBLEM_SCHEMA,
    assert_counters_match,
    create_list,
    drive,
    fetch_archive,
    get_batch,
    list_members,
    member_posts,
    response_of,
    shape_errors,
    submit,
)
from tests.conftest import LIST_BODY, ApiUser


def _run(
    api: ApiUser, services: Services, operations: list[dict[str, Any]]
) -> dict[str | None, Any]:
    """Submit, run to the end, and return the results by operation_id (each exactly once)."""
    batch = submit(api.client, operations)
    drive(services, batch["id"])
    done = get_batch(api.client, batch["id"])
    assert done["status"] == "finished"
    archive = fetch_archive(api.client, done)
    assert_counters_match(done, archive)
    by_id = archive.by_operation_id()
    assert all(len(results) == 1 for key, results in by_id.items() if key is not None)
    return {key: results[0] for key, results in by_id.items()}


def _problem(result: dict[str, Any], status: int, title: str | None = None) -> dict[str, Any]:
    assert result["status_code"] == status, result
    body = response_of(result)
    assert not shape_errors(body, PROBLEM_SCHEMA), body
    assert body["status"] == status
    if title is not None:
        assert body["title"] == title, body
    return dict(body)


def test_problems_are_results(api: ApiUser, services: Services) -> None:
    list_id = create_list(api.client)
    members = f"lists/{list_id}/members"
    results = _run(
        api,
        services,
        [
            {"method": "GET", "path": "no/such/route", "operation_id": "unknown"},
            {"method": "GET", "path": "lists/0000000000", "operation_id": "missing"},
            {"method": "POST", "path": members, "body": "{not json", "operation_id": "parse"},
            {"method": "PATCH", "path": "lists", "body": "{}", "operation_id": "method"},
            {"method": "DELETE", "path": "lists", "operation_id": "delete-collection"},
            {"method": "POST", "path": members, "body": {"status": "subscribed"},
             "operation_id": "invalid"},
        ],
    )  # fmt: skip
    _problem(results["unknown"], 404, "Resource Not Found")
    _problem(results["missing"], 404, "Resource Not Found")
    _problem(results["parse"], 400, "JSON Parse Exception")
    _problem(results["method"], 405, "Method Not Allowed")
    _problem(results["delete-collection"], 405, "Method Not Allowed")
    _problem(results["invalid"], 400, "Invalid Resource")


UNSAFE_PATHS = [
    "https://example.com/3.0/lists",
    "http:lists",
    "//example.com/lists",
    "lists/../lists",
    "lists/%2e%2e/lists",
    "lists/%2E%2E/lists",
    "./lists",
    "lists/./x",
    "lists\\..\\lists",
    "lists/%2flists",
    "lists#frag",
    "lists /x",
    "/",
    "3.0",
]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unsafe_paths_are_400_results_and_never_run(
    api: ApiUser, services: Services, method: str
) -> None:
    operations = [
        {"method": method, "path": path, "operation_id": f"unsafe-{i}", "body": LIST_BODY}
        for i, path in enumerate(UNSAFE_PATHS)
    ]
    results = _run(api, services, operations)
    for i in range(len(UNSAFE_PATHS)):
        _problem(results[f"unsafe-{i}"], 400, "Bad Request")
    # Had any POST run, it would have created a list.
    assert api.client.get("/3.0/lists").json()["total_items"] == 0


def test_batch_endpoints_are_off_limits(api: ApiUser, services: Services) -> None:
    client = api.client
    own = submit(client, [{"method": "GET", "path": "lists"}])
    nested = {"operations": [{"method": "GET", "path": "lists"}]}
    hook = {"url": "https://example.com/hook"}
    paths = [
        ("POST", "batches", nested),
        ("POST", "/batches", nested),
        ("POST", "/3.0/batches", nested),
        ("POST", "Batches", nested),
        ("POST", "batches/", nested),
        ("GET", "batches", None),
        ("GET", f"batches/{own['id']}", None),
        ("DELETE", f"batches/{own['id']}", None),
        ("DELETE", f"/3.0/batches/{own['id']}", None),
        ("POST", "batch-webhooks", hook),
        ("GET", "batch-webhooks", None),
        ("POST", "%62atches", nested),
    ]
    operations = [
        {"method": method, "path": path, "body": body, "operation_id": f"batch-{i}"}
        for i, (method, path, body) in enumerate(paths)
    ]
    results = _run(api, services, operations)
    for i in range(len(paths)):
        _problem(results[f"batch-{i}"], 400, "Bad Request")
    # Nothing ran: the batch that was to be deleted is there, no other batch appeared.
    listed = client.get("/3.0/batches").json()
    assert listed["total_items"] == 2
    assert get_batch(client, own["id"])["status"] == "pending"
    assert client.get("/3.0/batch-webhooks").json()["total_items"] == 0


def test_operation_spellings(api: ApiUser, services: Services) -> None:
    list_id = create_list(api.client)
    body = {"email_address": "a@example.org", "status": "subscribed"}
    results = _run(
        api,
        services,
        [
            # Lower-case method, leading slash, body as an object.
            {"method": "post", "path": f"/lists/{list_id}/members", "body": body,
             "operation_id": "lower"},
            # Mixed case, no leading slash, body as a JSON string (what Mailchimp documents).
            {"method": "Put", "path": f"lists/{list_id}/members/b@example.org",
             "body": json.dumps({"email_address": "b@example.org", "status_if_new": "pending"}),
             "operation_id": "string-body"},
            # The full API path, a trailing slash, a query in the path and params.
            {"method": "get", "path": f"/3.0/lists/{list_id}/", "operation_id": "full-path",
             "params": {"fields": "id,name"}},
            {"method": "GET", "path": f"lists/{list_id}/members?count=1",
             "operation_id": "query-in-path"},
            {"method": "GET", "path": f"lists/{list_id}/members?count=1", "params": {"count": 2},
             "operation_id": "params-win"},
            # Numeric operation ids come back as strings.
            {"method": "GET", "path": "lists", "operation_id": 42},
            {"method": "GET", "path": "lists", "operation_id": 1.5},
            {"method": "GET", "path": "lists", "operation_id": None},
            {"method": "PATCH", "path": f"lists/{list_id}/members/a@example.org",
             "body": {"merge_fields": {"FNAME": "Ann"}}, "operation_id": "patch"},
        ],
    )  # fmt: skip
    assert response_of(results["lower"])["email_address"] == "a@example.org"
    assert results["string-body"]["status_code"] == 200
    assert response_of(results["string-body"])["status"] == "pending"
    assert response_of(results["full-path"]) == {"id": list_id, "name": LIST_BODY["name"]}
    assert len(response_of(results["query-in-path"])["members"]) == 1
    assert len(response_of(results["params-win"])["members"]) == 2
    assert results["42"]["status_code"] == 200
    assert results["1.5"]["status_code"] == 200
    assert results[None]["operation_id"] is None
    assert response_of(results["patch"])["merge_fields"]["FNAME"] == "Ann"


def test_delete_result_has_an_empty_response(api: ApiUser, services: Services) -> None:
    list_id = create_list(api.client)
    setup = submit(api.client, member_posts(list_id, 1))
    drive(services, setup["id"])
    results = _run(
        api,
        services,
        [{"method": "DELETE", "path": f"lists/{list_id}/members/user0@example.org",
          "operation_id": "gone"}],
    )  # fmt: skip
    assert results["gone"]["status_code"] == 204
    assert results["gone"]["response"] == ""
    # As on Mailchimp, DELETE archives the member: gone from the default listing, there
    # when archived members are asked for.
    assert list_members(api.client, list_id) == []
    archived = api.client.get(f"/3.0/lists/{list_id}/members", params={"status": "archived"})
    assert [m["status"] for m in archived.json()["members"]] == ["archived"]


def test_failed_operation_leaves_no_effect(api: ApiUser, services: Services) -> None:
    """A non-2xx operation's writes roll back to its savepoint; its neighbours stay."""
    list_id = create_list(api.client)
    results = _run(
        api,
        services,
        [
            *member_posts(list_id, 2),
            {"method": "POST", "path": f"lists/{list_id}/members",
             "body": {"email_address": "user1@example.org", "status": "subscribed"},
             "operation_id": "again"},
            {"method": "POST", "path": f"lists/{list_id}/members",
             "body": {"email_address": "user2@example.org", "status": "bogus"},
             "operation_id": "bad-status"},
        ],
    )  # fmt: skip
    _problem(results["again"], 400, "Member Exists")
    _problem(results["bad-status"], 400)
    emails = sorted(m["email_address"] for m in list_members(api.client, list_id))
    assert emails == ["user0@example.org", "user1@example.org"]


# --- a GET without `count` pages through the collection -------------------------------------


def test_get_without_count_pages_through_the_collection(api: ApiUser, services: Services) -> None:
    page_size = services.settings.batches.page_size
    assert page_size == 10
    client = api.client
    list_id = create_list(client)
    setup = submit(client, member_posts(list_id, 35))
    drive(services, setup["id"])
    members = f"lists/{list_id}/members"
    operations: list[dict[str, Any]] = [
        {"method": "GET", "path": members, "operation_id": "all"},
        {"method": "GET", "path": members, "params": {"count": 5}, "operation_id": "count"},
        {"method": "GET", "path": members, "params": {"offset": 30}, "operation_id": "tail"},
        {"method": "GET", "path": f"{members}/user3@example.org", "operation_id": "one"},
        {"method": "GET", "path": "lists", "operation_id": "lists"},
        {"method": "GET", "path": members, "params": {"status": "unsubscribed"},
         "operation_id": "none"},
    ]  # fmt: skip
    batch = submit(client, operations)
    assert batch["total_operations"] == 6
    drive(services, batch["id"])
    done = get_batch(client, batch["id"])
    # "all" became 4 pages: 3 more operations than were submitted.
    assert done["total_operations"] == 6 + 3
    archive = fetch_archive(client, done)
    assert_counters_match(done, archive)
    by_id = archive.by_operation_id()

    pages = [response_of(result) for result in by_id["all"]]
    assert [len(page["members"]) for page in pages] == [10, 10, 10, 5]
    assert all(page["total_items"] == 35 for page in pages)
    emails = [member["email_address"] for page in pages for member in page["members"]]
    assert sorted(emails) == sorted(f"user{i}@example.org" for i in range(35))

    assert [len(response_of(r)["members"]) for r in by_id["count"]] == [5]
    assert [len(response_of(r)["members"]) for r in by_id["tail"]] == [5]
    assert len(by_id["one"]) == 1
    assert response_of(by_id["one"][0])["email_address"] == "user3@example.org"
    assert len(by_id["lists"]) == 1
    assert [response_of(r)["total_items"] for r in by_id["none"]] == [0]


def test_paged_get_of_a_missing_collection_is_one_error(api: ApiUser, services: Services) -> None:
    results = _run(
        api,
        services,
        [{"method": "GET", "path": "lists/0000000000/members", "operation_id": "nope"}],
    )
    _problem(results["nope"], 404)


def test_get_without_count_pages_with_fields(api: ApiUser, services: Services) -> None:
    """`fields` may leave `total_items` out of each page; the paging must not depend on it."""
    client = api.client
    list_id = create_list(client)
    setup = submit(client, member_posts(list_id, 35))
    drive(services, setup["id"])
    members = f"lists/{list_id}/members"
    results = fetch_archive(
        client,
        get_batch(
            client,
            drive_to_end(
                api,
                services,
                [
                    {"method": "GET", "path": members, "operation_id": "fields",
                     "params": {"fields": "members.email_address"}},
                    {"method": "GET", "path": members, "operation_id": "exclude",
                     "params": {"exclude_fields": "total_items,_links,members._links"}},
                    {"method": "GET", "path": f"{members}?fields=members.id,total_items",
                     "operation_id": "both"},
                ],
            ),
        ),
    ).by_operation_id()  # fmt: skip
    pages = [response_of(r) for r in results["fields"]]
    assert [list(page) for page in pages] == [["members"]] * 4
    assert sum(len(page["members"]) for page in pages) == 35
    assert all(set(m) == {"email_address"} for page in pages for m in page["members"])
    pages = [response_of(r) for r in results["exclude"]]
    assert len(pages) == 4
    assert all("total_items" not in page and "_links" not in page for page in pages)
    assert all("_links" not in m for page in pages for m in page["members"])
    pages = [response_of(r) for r in results["both"]]
    assert [page["total_items"] for page in pages] == [35] * 4


def drive_to_end(api: ApiUser, services: Services, operations: list[dict[str, Any]]) -> str:
    batch = submit(api.client, operations)
    drive(services, batch["id"])
    return str(batch["id"])
