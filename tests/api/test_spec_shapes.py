"""Every served operation, as today's server answers it, compared with Mailchimp's spec.

One scenario (one app, one SQLite database, the embedded runtime, a real webhook receiver)
walks every operation: lists, members (collection, tags, archive, permanent delete), merge
fields, batch subscribe, the root and /ping, batches (submit, status, page, archive, delete),
batch webhooks (with Conveyor's delivery log) and error answers of every status the server
gives. Each answer is then its own test, checked by `tests.shape_check`.

Every answer conforms (issue 15 fixed the departures this scenario found); the properties
and values the real service sends beyond the spec are the documented ones in
`tests.shape_check` (EXTENSIONS and `_tolerated`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from conveyor.composition import open_services
from conveyor.domain.problems import TRIGGERED_ERRORS
from conveyor.http.app import create_app
from conveyor.reference import marketing_subset
from conveyor.runtime.embedded import embedded_runtime
from conveyor.settings import Settings
from tests.conftest import LIST_BODY, new_account_key
from tests.shape_check import (
    EXTENSION_OPERATIONS,
    JSON_TYPE,
    MODE_ENV,
    PROBLEM_TYPE,
    REPORT_ENV,
    Violation,
    check_httpx_response,
    check_response,
    format_violations,
    install_shape_check,
    match_template,
    mode_from_env,
)
from tests.webhooks.receiver import running_receiver


def _md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


# --- the scenario --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, httpx2.Response]]:
    """Every answer of the scenario, by case name (built once for the module)."""
    data_dir = tmp_path_factory.mktemp("shapes") / "data"
    services = open_services(Settings(data_dir=data_dir, secret="test-secret"))
    runtime = embedded_runtime(services)
    runtime.start()
    try:
        with (
            running_receiver() as receiver,
            TestClient(
                create_app(services, runtime.dispatcher.send), base_url="http://testserver"
            ) as client,
            TestClient(create_app(services), base_url="http://testserver") as quiet,
        ):
            _account_id, key = new_account_key(services)
            client.auth = httpx2.BasicAuth("x", key)
            quiet.auth = httpx2.BasicAuth("x", key)
            recorded: dict[str, httpx2.Response] = {}
            _run_scenario(
                Recorder(client, recorded), receiver.url, runtime.join, Recorder(quiet, recorded)
            )
            yield recorded
    finally:
        runtime.stop()
        services.close()


@dataclass
class Recorder:
    client: TestClient
    answers: dict[str, httpx2.Response]

    def __call__(self, case: str, method: str, url: str, **options: Any) -> httpx2.Response:
        assert case not in self.answers, case
        response: httpx2.Response = self.client.request(method, url, **options)
        response.read()
        self.answers[case] = response
        return response

    def json(self, case: str, method: str, url: str, **options: Any) -> Any:
        response = self(case, method, url, **options)
        assert response.status_code == 200, (case, response.status_code, response.text)
        return response.json()


def _run_scenario(
    call: Recorder, receiver_url: str, join: Callable[[], None], quiet: Recorder
) -> None:
    """`quiet` talks to an app that sends no work: a batch it takes waits, untouched."""
    # The root and health.
    call("root", "GET", "/3.0/")
    call("root_fields", "GET", "/3.0/", params={"fields": "account_id,email"})
    call("ping", "GET", "/3.0/ping")

    # Lists.
    list_id = call.json("list_create", "POST", "/3.0/lists", json=LIST_BODY)["id"]
    lists = f"/3.0/lists/{list_id}"
    call("list_get", "GET", lists)
    call("list_get_exclude_fields", "GET", lists, params={"exclude_fields": "stats,_links"})
    call("list_patch", "PATCH", lists, json={"name": "Renamed"})
    call("lists_page", "GET", "/3.0/lists")
    call("lists_page_fields", "GET", "/3.0/lists", params={"fields": "lists.id,total_items"})
    call(
        "lists_page_filtered",
        "GET",
        "/3.0/lists",
        params={
            "since_date_created": "2000-01-01T00:00:00+00:00",
            "sort_field": "date_created",
            "sort_dir": "DESC",
            "include_total_contacts": "true",
        },
    )
    call("list_get_total_contacts", "GET", lists, params={"include_total_contacts": "true"})

    # Merge fields.
    merge = call.json(
        "merge_field_create",
        "POST",
        f"{lists}/merge-fields",
        json={"tag": "CITY", "name": "City", "type": "text"},
    )
    merge_url = f"{lists}/merge-fields/{merge['merge_id']}"
    call("merge_field_get", "GET", merge_url)
    call("merge_field_patch", "PATCH", merge_url, json={"name": "Town"})
    call("merge_fields_page", "GET", f"{lists}/merge-fields")
    call(
        "merge_fields_filtered",
        "GET",
        f"{lists}/merge-fields",
        params={"type": "text", "required": "false"},
    )

    # Members.
    ann = "ann@example.org"
    members = f"{lists}/members"
    ann_url = f"{members}/{_md5(ann)}"
    member_body = {
        "email_address": ann,
        "status": "subscribed",
        "merge_fields": {"FNAME": "Ann", "CITY": "Springfield"},
        "tags": ["vip"],
    }
    call.json("member_create", "POST", members, json=member_body)
    call("member_get", "GET", ann_url)
    call("member_get_by_email", "GET", f"{members}/{ann}")
    call("member_get_fields", "GET", ann_url, params={"fields": "id,email_address,stats"})
    call("member_patch", "PATCH", ann_url, json={"merge_fields": {"LNAME": "Smith"}})
    bob = "bob@example.org"
    call(
        "member_put_new",
        "PUT",
        f"{members}/{_md5(bob)}",
        json={"email_address": bob, "status_if_new": "pending"},
    )
    call(
        "member_put_existing", "PUT", ann_url, json={"email_address": ann, "status": "unsubscribed"}
    )
    call("members_page", "GET", members)
    call("members_page_fields", "GET", members, params={"fields": "members.email_address"})
    call(
        "members_page_filtered",
        "GET",
        members,
        params={
            "status": "subscribed",
            "since_last_changed": "2000-01-01T00:00:00+00:00",
            "vip_only": "false",
            "email_type": "html",
            "sort_field": "last_changed",
            "sort_dir": "DESC",
        },
    )
    call(
        "member_patch_by_override",
        "POST",
        ann_url,
        json={"merge_fields": {"FNAME": "Annie"}},
        headers={"X-HTTP-Method-Override": "PATCH"},
    )
    call(
        "member_tags_post",
        "POST",
        f"{ann_url}/tags",
        json={"tags": [{"name": "new", "status": "active"}, {"name": "vip", "status": "inactive"}]},
    )
    call("member_tags_get", "GET", f"{ann_url}/tags")
    call(
        "batch_subscribe",
        "POST",
        lists,
        json={
            "members": [
                {"email_address": "carol@example.org", "status": "subscribed"},
                {"email_address": ann, "status": "subscribed"},
                {"email_address": "not-an-address", "status": "subscribed"},
                {
                    "email_address": "erin@example.org",
                    "status": "subscribed",
                    "location": {"latitude": None, "longitude": None},
                    "vip": None,
                    "tags": None,
                },
            ],
            "update_existing": True,
            "sync_tags": None,
        },
    )
    call("member_archive", "DELETE", f"{members}/{_md5(bob)}")
    call("member_delete_permanent", "POST", f"{ann_url}/actions/delete-permanent")

    # Batch webhooks (created first so that the batch below is delivered to the receiver).
    hook = call.json("webhook_create", "POST", "/3.0/batch-webhooks", json={"url": receiver_url})
    hook_url = f"/3.0/batch-webhooks/{hook['id']}"
    call("webhook_get", "GET", hook_url)
    call("webhooks_page", "GET", "/3.0/batch-webhooks")

    # Batches.
    operations = [
        {
            "method": "POST",
            "path": f"lists/{list_id}/members",
            "operation_id": "dave",
            "body": json.dumps({"email_address": "dave@example.org", "status": "subscribed"}),
        },
        {"method": "GET", "path": f"/lists/{list_id}"},
        {"method": "GET", "path": "/lists/nope"},
    ]
    batch = call.json("batch_submit", "POST", "/3.0/batches", json={"operations": operations})
    join()
    finished = call.json("batch_get_finished", "GET", f"/3.0/batches/{batch['id']}")
    call("batch_get_fields", "GET", f"/3.0/batches/{batch['id']}", params={"fields": "id,status"})
    call("batches_page", "GET", "/3.0/batches")
    call("batch_archive", "GET", finished["response_body_url"], auth=None)

    # Conveyor's own batch endpoints (README, "Beyond Mailchimp").
    one_batch = f"/3.0/batches/{batch['id']}"
    call("batch_operations", "GET", f"{one_batch}/operations")
    call("batch_operations_failed", "GET", f"{one_batch}/operations", params={"status": "failed"})
    call("batch_results_ndjson", "GET", f"{one_batch}/results.ndjson")
    call("batch_events", "GET", f"{one_batch}/events")
    retried = call.json("batch_retry", "POST", f"{one_batch}/retry")
    join()
    call("batch_get_retry", "GET", f"/3.0/batches/{retried['id']}")
    keyed = {"Idempotency-Key": "shape-check", **_json_header()}
    waiting = quiet.json(
        "batch_submit_keyed", "POST", "/3.0/batches", json={"operations": operations}, headers=keyed
    )
    quiet(
        "batch_submit_replayed",
        "POST",
        "/3.0/batches",
        json={"operations": operations},
        headers=keyed,
    )
    call.json("batch_cancel", "POST", f"/3.0/batches/{waiting['id']}/cancel")
    join()
    call("batch_get_canceled", "GET", f"/3.0/batches/{waiting['id']}")
    call("batches_page_extended", "GET", "/3.0/batches")
    deliveries = call.json("webhook_deliveries", "GET", f"{hook_url}/deliveries")
    delivery_id = deliveries["deliveries"][0]["id"]
    call("webhook_redeliver", "POST", f"{hook_url}/deliveries/{delivery_id}/redeliver")
    join()
    call("webhook_patch", "PATCH", hook_url, json={"enabled": False})
    call("batch_delete", "DELETE", f"/3.0/batches/{batch['id']}")
    call("webhook_delete", "DELETE", hook_url)

    # Merge field and list removal.
    call("merge_field_delete", "DELETE", merge_url)

    # Error answers.
    call("e400_json_parse", "POST", "/3.0/lists", content=b"{nope", headers=_json_header())
    call("e400_invalid_resource", "POST", "/3.0/lists", json={})
    call("e400_fake_email", "POST", members, json={"email_address": "x", "status": "subscribed"})
    call(
        "e400_member_exists",
        "POST",
        members,
        json={"email_address": "carol@example.org", "status": "subscribed"},
    )
    call("e400_forgotten", "POST", members, json={"email_address": ann, "status": "subscribed"})
    call("e400_batch_body", "POST", "/3.0/batches", json={"operations": "no"})
    call("e400_paging", "GET", "/3.0/lists", params={"count": "-1"})
    call("e400_operations_status", "GET", f"{one_batch}/operations", params={"status": "x"})
    call("e400_retry_nothing_failed", "POST", f"/3.0/batches/{waiting['id']}/retry")
    call("e400_cancel_finished", "POST", f"{one_batch}/cancel")
    call("e400_idempotency_key", "POST", "/3.0/batches", json={}, headers={"Idempotency-Key": ""})
    call(
        "e422_idempotency_key_reused",
        "POST",
        "/3.0/batches",
        json={"operations": operations[:1]},
        headers=keyed,
    )
    call("e401_missing", "GET", "/3.0/lists", auth=None)
    call("e401_invalid", "GET", "/3.0/lists", auth=("x", "0" * 32 + "-us1"))
    call(
        "e401_bearer_invalid",
        "GET",
        "/3.0/batches",
        auth=None,
        headers={"Authorization": "Bearer nope"},
    )
    call("e403_archive_signature", "GET", finished["response_body_url"] + "0", auth=None)
    call("e404_list", "GET", "/3.0/lists/nope")
    call("e404_member", "GET", f"{members}/{_md5('nobody@example.org')}")
    call("e404_merge_field", "GET", f"{lists}/merge-fields/999")
    call("e404_batch", "GET", "/3.0/batches/0123456789")
    call("e404_batch_operations", "GET", "/3.0/batches/0123456789/operations")
    call("e404_batch_events", "GET", "/3.0/batches/0123456789/events")
    call("e404_webhook", "GET", "/3.0/batch-webhooks/nope")
    call("e404_list_newline", "GET", "/3.0/lists/%0A")
    call("e404_unknown_path", "GET", "/3.0/nowhere")
    call("e404_outside_api", "GET", "/elsewhere")
    call("e405_ping", "DELETE", "/3.0/ping")
    call("e405_batches", "PUT", "/3.0/batches")
    call("e405_webhooks", "PUT", "/3.0/batch-webhooks")
    call("e405_batch", "PATCH", "/3.0/batches/0123456789")
    call("e422_fields", "GET", "/3.0/lists", params={"fields": "nope"})
    call("e422_method_override", "PUT", "/3.0/lists", headers={"X-HTTP-Method-Override": "GET"})
    for name in TRIGGERED_ERRORS:
        call(f"trigger_{name}", "GET", "/3.0/lists", headers={"X-Trigger-Error": name})
    call("list_delete", "DELETE", lists)
    call("e404_list_deleted", "GET", lists)


def _json_header() -> dict[str, str]:
    return {"Content-Type": "application/json"}


CASES = [
    "root", "root_fields", "ping",
    "list_create", "list_get", "list_get_exclude_fields", "list_patch", "lists_page",
    "lists_page_fields", "lists_page_filtered", "list_get_total_contacts",
    "merge_field_create", "merge_field_get", "merge_field_patch", "merge_fields_page",
    "merge_fields_filtered",
    "member_create", "member_get", "member_get_by_email", "member_get_fields", "member_patch",
    "member_put_new", "member_put_existing", "members_page", "members_page_fields",
    "members_page_filtered", "member_patch_by_override",
    "member_tags_post", "member_tags_get", "batch_subscribe", "member_archive",
    "member_delete_permanent",
    "webhook_create", "webhook_get", "webhooks_page", "webhook_deliveries", "webhook_redeliver",
    "webhook_patch", "webhook_delete",
    "batch_submit", "batch_get_finished", "batch_get_fields", "batches_page", "batch_archive",
    "batch_delete",
    "batch_operations", "batch_operations_failed", "batch_results_ndjson", "batch_events",
    "batch_retry", "batch_get_retry", "batch_submit_keyed", "batch_submit_replayed",
    "batch_cancel", "batch_get_canceled", "batches_page_extended",
    "e400_operations_status", "e400_retry_nothing_failed", "e400_cancel_finished",
    "e400_idempotency_key", "e422_idempotency_key_reused", "e404_batch_operations",
    "e404_batch_events",
    "merge_field_delete", "list_delete",
    "e400_json_parse", "e400_invalid_resource", "e400_fake_email", "e400_member_exists",
    "e400_forgotten", "e400_batch_body", "e400_paging", "e401_missing", "e401_invalid",
    "e401_bearer_invalid", "e403_archive_signature", "e404_list", "e404_member",
    "e404_merge_field", "e404_batch", "e404_webhook", "e404_list_newline", "e404_unknown_path",
    "e404_outside_api",
    "e405_ping", "e405_batches", "e405_webhooks", "e405_batch", "e422_fields",
    "e422_method_override", "e404_list_deleted",
    *(f"trigger_{name}" for name in TRIGGERED_ERRORS),
]  # fmt: skip


def test_the_scenario_covers_every_case(answers: dict[str, httpx2.Response]) -> None:
    assert sorted(answers) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
def test_answer_matches_the_spec(case: str, answers: dict[str, httpx2.Response]) -> None:
    violations = check_httpx_response(answers[case])
    assert not violations, format_violations(violations)


def test_every_status_code_of_the_scenario_is_exercised(
    answers: dict[str, httpx2.Response],
) -> None:
    statuses = {response.status_code for response in answers.values()}
    assert {200, 204, 400, 401, 403, 404, 405, 422, 429, 500} <= statuses, statuses


# --- the spec covers what the server serves ------------------------------------------------


def test_every_served_operation_is_in_the_spec_or_a_listed_extension(tmp_path: Path) -> None:
    services = open_services(Settings(data_dir=tmp_path / "data", secret="test-secret"))
    try:
        app = create_app(services)
        served: set[tuple[str, str]] = set()
        for route in app.routes:
            assert isinstance(route, Route)
            if "{path:path}" in route.path or route.path == "/3.0":
                continue  # the marketing route table, listed below
            if route.path == "/dashboard" or route.path.startswith("/dashboard/"):
                continue  # the dashboard's pages, for people (docs/dashboard.md)
            if not route.path.startswith("/3.0/"):
                # Outside the API: Conveyor's own, for operators (docs/deploy.md).
                assert route.path in {
                    "/healthz",
                    "/readyz",
                    "/metrics",
                    "/docs",
                    "/docs/assets/{name}",
                }, route.path
                continue
            for method in route.methods or ():
                if method != "HEAD":
                    served.add((method, route.path))
        for pattern, methods in services.routes.patterns():
            served |= {(method, "/3.0" + pattern.rstrip("/")) for method in methods}
    finally:
        services.close()
    paths = marketing_subset()["paths"]
    for method, path in sorted(served):
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        template = match_template(concrete)
        assert template is not None, (method, path)
        in_spec = method.lower() in paths.get(template, {})
        assert in_spec or (method, template) in EXTENSION_OPERATIONS, (method, path, template)


def test_the_packaged_spec_is_self_contained() -> None:
    document = marketing_subset()
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                if name == "$ref":
                    refs.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    schemas = document["components"]["schemas"]
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    assert document["openapi"] == "3.1.1"
    assert document["servers"][0]["url"].endswith("/3.0")


# --- the checker itself --------------------------------------------------------------------


def _headers(content_type: str = JSON_TYPE, request_id: str = "r-1") -> dict[str, str]:
    return {"Content-Type": content_type, "X-Request-Id": request_id}


PING = "/3.0/ping"
MEMBER = "/3.0/lists/abc/members/0123456789abcdef0123456789abcdef"
PROBLEM = {
    "type": "https://mailchimp.com/developer/marketing/docs/errors/",
    "title": "Resource Not Found",
    "status": 404,
    "detail": "The requested resource could not be found.",
    "instance": "r-1",
}


def _rules(violations: list[Violation]) -> set[tuple[str, str]]:
    return {(v.rule, v.where) for v in violations}


def _check(
    method: str,
    path: str,
    body: Any,
    *,
    status: int = 200,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> set[tuple[str, str]]:
    raw = json.dumps(body).encode() if body is not None else b""
    return _rules(check_response(method, path, query or {}, status, raw, headers or _headers()))


def test_checker_matches_path_templates() -> None:
    assert match_template("/3.0") == "/"
    assert match_template("/3.0/") == "/"
    assert match_template(MEMBER) == "/lists/{list_id}/members/{subscriber_hash}"
    assert match_template(MEMBER + "/actions/delete-permanent") == (
        "/lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent"
    )
    assert (
        match_template("/3.0/lists/abc/merge-fields/3")
        == "/lists/{list_id}/merge-fields/{merge_id}"
    )
    assert match_template("/3.0/batches/") == "/batches"
    assert match_template("/3.0/batches/abc-response.tar.gz") == (
        "/batches/{batch_id}-response.tar.gz"
    )
    assert match_template("/3.0/nowhere") is None
    assert match_template("/3.01/ping") is None
    assert match_template("/ping") is None


def test_checker_passes_a_conforming_answer() -> None:
    assert _check("GET", PING, {"health_status": "Everything's Chimpy!"}) == set()
    assert _check("GET", PING, PROBLEM, status=404, headers=_headers(PROBLEM_TYPE)) == set()


def test_checker_finds_unexpected_missing_and_mistyped_properties() -> None:
    assert _check("GET", PING, {"health_status": 1, "extra": True}) == {
        ("type", "$.health_status"),
        ("unexpected-property", "$.extra"),
    }
    problem = {key: value for key, value in PROBLEM.items() if key != "detail"}
    assert _check("GET", PING, problem, status=404, headers=_headers(PROBLEM_TYPE)) == {
        ("required", "$")
    }


def test_checker_goes_into_nested_objects_and_arrays() -> None:
    member = {
        "id": "x",
        "status": "gone",  # not in the enum
        "stats": {"avg_open_rate": "high", "surprise": 1},
        "merge_fields": {"FNAME": "Ann", "ANY_TAG": 3},  # an open map: any merge tag
        "interests": {"abc123": "yes"},  # an open map of booleans
        "tags": [{"id": 1, "name": "t", "colour": "red"}],
        "_links": [{"rel": "self", "href": "h", "method": "FETCH"}],
    }
    assert _check("GET", MEMBER, member) == {
        ("enum", "$.status"),
        ("type", "$.stats.avg_open_rate"),
        ("unexpected-property", "$.stats.surprise"),
        ("type", "$.interests.abc123"),
        ("unexpected-property", "$.tags[0].colour"),
        ("enum", "$._links[0].method"),
    }


def test_checker_allows_documented_extensions_only_where_listed() -> None:
    hook = {"id": "w1", "url": "https://example.org/h", "enabled": True, "_links": []}
    assert _check("POST", "/3.0/batch-webhooks", {**hook, "secret": "a" * 64}) == set()
    assert _check("GET", "/3.0/batch-webhooks/w1", {**hook, "secret": "a" * 64}) == {
        ("unexpected-property", "$.secret")
    }
    problem = {**PROBLEM, "status": 400, "errors": [{"field": "name", "message": "blank"}]}
    assert (
        _check("POST", "/3.0/lists", problem, status=400, headers=_headers(PROBLEM_TYPE)) == set()
    )
    problem["errors"] = [{"field": "name"}]
    assert _check("POST", "/3.0/lists", problem, status=400, headers=_headers(PROBLEM_TYPE)) == {
        ("required", "$.errors[0]")
    }


def test_checker_checks_only_kept_fields_after_a_field_selection() -> None:
    selected = {"members": [{"email_address": "a@example.org"}]}
    members = "/3.0/lists/abc/members"
    assert _check("GET", members, selected, query={"fields": "members.email_address"}) == set()
    wrong = {"members": [{"email_address": 5, "nope": 1}]}
    assert _check("GET", members, wrong, query={"fields": "members.email_address"}) == {
        ("type", "$.members[0].email_address"),
        ("unexpected-property", "$.members[0].nope"),
    }
    # The problem schema's `required` is not relaxed by a selection: only success bodies are cut.
    assert _check(
        "GET", members, {"status": 404}, status=404, query={"fields": "x"},
        headers=_headers(PROBLEM_TYPE),
    ) == {("required", "$")}  # fmt: skip


def test_checker_checks_headers_status_and_problem_identity() -> None:
    health = {"health_status": "Everything's Chimpy!"}
    assert _check("GET", PING, health, headers=_headers("application/json")) == {
        ("content-type", "header Content-Type")
    }
    assert _check("GET", PING, health, headers={"Content-Type": JSON_TYPE}) == {
        ("request-id", "header X-Request-Id")
    }
    assert _check("GET", PING, health, status=201) == {("status", "status")}
    assert _check("GET", PING, PROBLEM, status=404) == {("content-type", "header Content-Type")}
    other = _headers(PROBLEM_TYPE, request_id="r-2")
    assert _check("GET", PING, PROBLEM, status=404, headers=other) == {("request-id", "$.instance")}
    assert _check("GET", PING, PROBLEM, status=400, headers=_headers(PROBLEM_TYPE)) == {
        ("status", "$.status")
    }
    assert _check("DELETE", "/3.0/lists/abc", {"deleted": True}) == {("status", "status")}
    assert _check("DELETE", "/3.0/lists/abc", None, status=204) == set()
    assert _check("PUT", PING, {}) == {("unknown-operation", "method")}
    assert _check("GET", "/3.0/nowhere", {}) == {("unknown-path", "path")}


def test_checker_tolerates_an_empty_date_only() -> None:
    batch = {
        "id": "0123456789",
        "status": "pending",
        "total_operations": 1,
        "finished_operations": 0,
        "errored_operations": 0,
        "submitted_at": "2024-01-01T00:00:00+00:00",
        "completed_at": "",
        "response_body_url": "",
        "_links": [],
    }
    assert _check("GET", "/3.0/batches/0123456789", batch) == set()
    assert _check("GET", "/3.0/batches/0123456789", {**batch, "submitted_at": ""}) == set()
    assert _check("GET", "/3.0/batches/0123456789", {**batch, "submitted_at": "soon"}) == {
        ("format", "$.submitted_at")
    }


# --- the hook ------------------------------------------------------------------------------


@pytest.fixture
def hooked_client(tmp_path: Path) -> Iterator[TestClient]:
    services = open_services(Settings(data_dir=tmp_path / "data", secret="test-secret"))
    try:
        with TestClient(create_app(services), base_url="http://testserver") as client:
            _account_id, key = new_account_key(services)
            client.auth = httpx2.BasicAuth("x", key)
            yield client
    finally:
        services.close()


def test_strict_hook_fails_a_departing_answer(hooked_client: TestClient) -> None:
    client = hooked_client
    install_shape_check(client, "strict")
    assert client.get("/3.0/ping").status_code == 200
    assert client.get("/3.0/lists/nope").status_code == 404
    # A method the spec lacks answered 2xx would be a departure; the server answers 405, which
    # is a conforming problem document.
    assert client.put("/3.0/ping").status_code == 405
    with pytest.raises(AssertionError, match=r"\[unknown-path\]"):
        _strict_check_of_an_unknown_success(client)


def _strict_check_of_an_unknown_success(client: TestClient) -> None:
    """An answer the server never gives, pushed through the client's own hooks."""
    request = client.build_request("GET", "http://testserver/3.0/nowhere")
    response = httpx2.Response(200, json={}, request=request, headers={"X-Request-Id": "r"})
    for hook in client.event_hooks["response"]:
        hook(response)


def test_report_hook_writes_json_lines(
    hooked_client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = hooked_client
    report = tmp_path / "shapes.jsonl"
    monkeypatch.setenv(REPORT_ENV, str(report))
    install_shape_check(client, "report")
    assert client.get("/3.0/ping").status_code == 200
    assert not report.exists()
    request = client.build_request("GET", "http://testserver/3.0/nowhere")
    response = httpx2.Response(200, json={}, request=request, headers={"X-Request-Id": "r"})
    for hook in client.event_hooks["response"]:
        hook(response)
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(line["rule"], line["path"]) for line in lines] == [("unknown-path", "/3.0/nowhere")]
    assert "test_report_hook_writes_json_lines" in lines[0]["test"]


def test_report_mode_needs_a_file(
    hooked_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REPORT_ENV, raising=False)
    with pytest.raises(ValueError, match=REPORT_ENV):
        install_shape_check(hooked_client, "report")


def test_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODE_ENV, raising=False)
    monkeypatch.delenv(REPORT_ENV, raising=False)
    assert mode_from_env("strict") == "strict"
    assert mode_from_env(None) is None
    monkeypatch.setenv(REPORT_ENV, "/tmp/shapes.jsonl")
    assert mode_from_env("strict") == "report"
    monkeypatch.setenv(MODE_ENV, "off")
    assert mode_from_env("strict") is None
    monkeypatch.setenv(MODE_ENV, "Strict")
    assert mode_from_env(None) == "strict"
    monkeypatch.setenv(MODE_ENV, "loud")
    with pytest.raises(ValueError, match=MODE_ENV):
        mode_from_env("strict")
