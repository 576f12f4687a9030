"""Each test control over HTTP, against an emulate-mode server with its runtime."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from conveyor.composition import Services
from conveyor.runtime.embedded import EmbeddedRuntime
from conveyor.storage.wipe import WipeStore
from tests.batches.support import fetch_archive, get_batch, member_posts
from tests.conftest import LIST_BODY
from tests.emulator.conftest import KEY, OTHER_KEY, as_key
from tests.webhooks.receiver import running_receiver

TOO_MANY = "You have exceeded the limit of 10 simultaneous connections."


def _list(client: TestClient, key: str = KEY) -> str:
    response = client.post("/3.0/lists", json=LIST_BODY, auth=as_key(key))
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _requests(client: TestClient, **filters: str) -> list[dict[str, Any]]:
    response = client.get("/_conveyor/requests", params=filters)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total_items"] == len(body["requests"])
    return list(body["requests"])


def _submit(client: TestClient, operations: list[dict[str, Any]], key: str = KEY) -> str:
    response = client.post("/3.0/batches", json={"operations": operations}, auth=as_key(key))
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def test_any_well_formed_key_gets_its_own_account(emulator: TestClient) -> None:
    ours = emulator.get("/3.0/", auth=as_key(KEY))
    theirs = emulator.get("/3.0/", auth=as_key(OTHER_KEY))
    assert ours.status_code == theirs.status_code == 200
    assert ours.json()["account_id"] != theirs.json()["account_id"]
    # The same key is the same account on every later use.
    assert emulator.get("/3.0/", auth=as_key(KEY)).json()["account_id"] == ours.json()["account_id"]
    list_id = _list(emulator)
    assert emulator.get(f"/3.0/lists/{list_id}", auth=as_key(OTHER_KEY)).status_code == 404


@pytest.mark.parametrize("key", ["not-a-key", "0123456789abcdef0123456789abcdef", "ABC-us1"])
def test_a_malformed_or_missing_key_still_gets_mailchimps_401(
    emulator: TestClient, key: str
) -> None:
    response = emulator.get("/3.0/ping", auth=as_key(key))
    assert response.status_code == 401
    assert response.json()["title"] == "API Key Invalid"
    missing = emulator.get("/3.0/ping")
    assert missing.status_code == 401
    assert missing.json()["title"] == "API Key Missing"


def test_reset_leaves_nothing_of_any_account(
    emulator: TestClient, services: Services, runtime: EmbeddedRuntime
) -> None:
    with running_receiver() as receiver:
        for key in (KEY, OTHER_KEY):
            list_id = _list(emulator, key)
            hook = emulator.post(
                "/3.0/batch-webhooks", json={"url": receiver.url}, auth=as_key(key)
            )
            assert hook.status_code == 200, hook.text
            _submit(emulator, member_posts(list_id, 3), key)
        runtime.join()
        receiver.wait_for_posts(2)
    emulator.post("/_conveyor/faults", json={"status": 500, "path": "/3.0/nothing"})
    with services.database.read() as conn:
        before = WipeStore(services.clock).remaining_rows(conn)
    assert all(before[name] for name in ("accounts", "lists", "members", "batches"))
    assert before["webhook_deliveries"] == 2

    response = emulator.post("/_conveyor/reset")
    assert response.status_code == 200, response.text
    assert response.json() == {"accounts_removed": 2}
    with services.database.read() as conn:
        after = WipeStore(services.clock).remaining_rows(conn)
    assert after == dict.fromkeys(after, 0)
    assert list((services.settings.blob_dir).rglob("*.tar.gz")) == []
    assert _requests(emulator) == []
    assert emulator.get("/_conveyor/faults").json()["total_items"] == 0
    # The same key works again, as a new, empty account.
    lists = emulator.get("/3.0/lists", auth=as_key(KEY))
    assert lists.status_code == 200 and lists.json()["total_items"] == 0


def test_reset_of_one_account_keeps_the_others(
    emulator: TestClient, runtime: EmbeddedRuntime
) -> None:
    mine, theirs = _list(emulator, KEY), _list(emulator, OTHER_KEY)
    _submit(emulator, member_posts(mine, 2), KEY)
    runtime.join()
    response = emulator.post("/_conveyor/reset", params={"api_key": KEY})
    assert response.status_code == 200, response.text
    assert response.json() == {"accounts_removed": 1}
    assert emulator.get("/3.0/lists", auth=as_key(KEY)).json()["total_items"] == 0
    assert emulator.get(f"/3.0/lists/{theirs}", auth=as_key(OTHER_KEY)).status_code == 200
    paths = {entry["path"] for entry in _requests(emulator)}
    assert paths == {"/3.0/lists", f"/3.0/lists/{theirs}"}


def test_fixtures_load_lists_merge_fields_and_members_and_answer_their_ids(
    emulator: TestClient,
) -> None:
    document = {
        "api_key": KEY,
        "lists": [
            {
                **LIST_BODY,
                "merge_fields": [{"tag": "PLAN", "name": "Plan", "type": "text"}],
                "members": [
                    {"email_address": "ann@example.org", "status": "subscribed"},
                    {
                        "email_address": "bob@example.org",
                        "status": "pending",
                        "merge_fields": {"PLAN": "pro"},
                    },
                ],
            }
        ],
    }
    response = emulator.post("/_conveyor/fixtures", json=document)
    assert response.status_code == 200, response.text
    loaded = response.json()["lists"][0]
    assert [field["tag"] for field in loaded["merge_fields"]] == ["PLAN"]
    emails = [member["email_address"] for member in loaded["members"]]
    assert emails == ["ann@example.org", "bob@example.org"]
    bob = emulator.get(
        f"/3.0/lists/{loaded['id']}/members/{loaded['members'][1]['id']}", auth=as_key(KEY)
    )
    assert bob.status_code == 200, bob.text
    assert bob.json()["merge_fields"]["PLAN"] == "pro"


def test_invalid_fixtures_are_one_problem_listing_each_part_and_nothing_is_loaded(
    emulator: TestClient,
) -> None:
    document = {
        "api_key": KEY,
        "lists": [
            {**LIST_BODY, "members": [{"email_address": "ok@example.org", "status": "subscribed"}]},
            {
                **LIST_BODY,
                "members": [
                    {"email_address": "not-an-email", "status": "subscribed"},
                    {"email_address": "fine@example.org", "status": "sideways"},
                ],
            },
            {"name": "No contact"},
        ],
    }
    response = emulator.post("/_conveyor/fixtures", json=document)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["title"] == "Invalid Resource"
    fields = [error["field"] for error in problem["errors"]]
    assert fields == ["lists[1].members[0]", "lists[1].members[1]", "lists[2]"]
    assert "looks fake or invalid" in problem["errors"][0]["message"]
    assert emulator.get("/3.0/lists", auth=as_key(KEY)).json()["total_items"] == 0


def test_the_journal_records_requests_oldest_first_with_filters(emulator: TestClient) -> None:
    list_id = _list(emulator)
    start = emulator.get("/_conveyor/clock").json()["now"]
    for email in ("a@example.org", "b@example.org", "c@example.org"):
        body = {"email_address": email, "status": "subscribed"}
        added = emulator.post(f"/3.0/lists/{list_id}/members", json=body, auth=as_key(KEY))
        assert added.status_code == 200
    emulator.get(f"/3.0/lists/{list_id}/members", params={"count": "5"}, auth=as_key(KEY))

    everything = _requests(emulator)
    assert [(e["method"], e["path"]) for e in everything][:2] == [
        ("POST", "/3.0/lists"),
        ("POST", f"/3.0/lists/{list_id}/members"),
    ]
    posted = _requests(emulator, method="POST", path="/3.0/lists/*/members")
    assert [e["body"]["email_address"] for e in posted] == [
        "a@example.org",
        "b@example.org",
        "c@example.org",
    ]
    assert {e["status"] for e in posted} == {200}
    assert all(e["request_id"] and e["batch_id"] is None for e in posted)
    read = _requests(emulator, method="GET")
    assert read[-1]["query"] == {"count": "5"}
    assert len(_requests(emulator, since=start)) == 4
    # `*` is one path segment, `**` any depth.
    assert _requests(emulator, path="/3.0/lists/*") == []
    assert len(_requests(emulator, path="/3.0/lists/**")) == 4
    assert emulator.delete("/_conveyor/requests").status_code == 204
    assert _requests(emulator) == []


def test_the_journal_records_batch_operations_with_batch_and_operation_ids(
    emulator: TestClient, runtime: EmbeddedRuntime
) -> None:
    list_id = _list(emulator)
    operations = member_posts(list_id, 3)
    batch_id = _submit(emulator, operations)
    runtime.join()
    ran = _requests(emulator, path="/3.0/lists/*/members", batch_id=batch_id)
    assert [(e["operation_id"], e["status"]) for e in ran] == [
        (op["operation_id"], 200) for op in operations
    ]
    assert {e["batch_id"] for e in ran} == {batch_id}
    assert [e["body"]["email_address"] for e in ran] == [
        json.loads(op["body"])["email_address"] for op in operations
    ]
    # The submit itself is journaled as the HTTP request it was.
    posts = _requests(emulator, method="POST", path="/3.0/batches")
    assert len(posts) == 1 and posts[0]["batch_id"] is None


def test_a_fault_with_times_two_fires_exactly_twice(emulator: TestClient) -> None:
    rule = emulator.post(
        "/_conveyor/faults",
        json={"method": "GET", "path": "/3.0/ping", "status": 429, "times": 2},
    )
    assert rule.status_code == 200, rule.text
    statuses = []
    for _ in range(4):
        response = emulator.get("/3.0/ping", auth=as_key(KEY))
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["content-type"].startswith("application/problem+json")
            problem = response.json()
            assert (problem["title"], problem["detail"]) == ("TooManyRequests", TOO_MANY)
            assert problem["instance"] == response.headers["x-request-id"]
    assert statuses == [429, 429, 200, 200]
    listed = emulator.get("/_conveyor/faults").json()["faults"]
    assert [(f["id"], f["fired"], f["times"]) for f in listed] == [(rule.json()["id"], 2, 2)]
    # The journal shows what the client saw.
    assert [e["status"] for e in _requests(emulator, path="/3.0/ping")] == statuses
    assert emulator.delete("/_conveyor/faults").status_code == 204
    assert emulator.get("/_conveyor/faults").json()["faults"] == []


def test_faults_answer_500_and_503_match_method_and_path_and_may_only_delay(
    emulator: TestClient,
) -> None:
    emulator.post("/_conveyor/faults", json={"method": "POST", "path": "/3.0/lists", "status": 500})
    emulator.post("/_conveyor/faults", json={"path": "/3.0/lists/*", "status": 503})
    emulator.post("/_conveyor/faults", json={"path": "/3.0/ping", "delay_ms": 150})
    created = emulator.post("/3.0/lists", json=LIST_BODY, auth=as_key(KEY))
    assert created.status_code == 500
    assert created.json()["title"] == "InternalServerError"
    assert emulator.get("/3.0/lists", auth=as_key(KEY)).status_code == 200  # GET: no rule
    assert emulator.get("/3.0/lists/abc", auth=as_key(KEY)).status_code == 503
    started = time.monotonic()
    assert emulator.get("/3.0/ping", auth=as_key(KEY)).status_code == 200
    assert time.monotonic() - started >= 0.15
    # Nothing was created by the faulted POST.
    assert emulator.get("/3.0/lists", auth=as_key(KEY)).json()["total_items"] == 0


def test_a_fault_with_probability_zero_never_fires(emulator: TestClient) -> None:
    emulator.post("/_conveyor/faults", json={"status": 500, "probability": 0})
    assert {emulator.get("/3.0/ping", auth=as_key(KEY)).status_code for _ in range(5)} == {200}
    assert emulator.get("/_conveyor/faults").json()["faults"][0]["fired"] == 0


def test_a_bad_fault_rule_is_one_problem(emulator: TestClient) -> None:
    response = emulator.post(
        "/_conveyor/faults", json={"status": 200, "times": 0, "in": "mail", "colour": "red"}
    )
    assert response.status_code == 400
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {"status", "times", "in", "colour"}
    assert emulator.post("/_conveyor/faults", json={"path": "/3.0/ping"}).status_code == 400


def test_a_fault_for_one_account_leaves_the_others_alone(emulator: TestClient) -> None:
    emulator.post("/_conveyor/faults", json={"status": 503, "api_key": OTHER_KEY})
    assert emulator.get("/3.0/ping", auth=as_key(KEY)).status_code == 200
    assert emulator.get("/3.0/ping", auth=as_key(OTHER_KEY)).status_code == 503


def test_a_batch_fault_answers_inside_the_batch(
    emulator: TestClient, runtime: EmbeddedRuntime
) -> None:
    list_id = _list(emulator)
    emulator.post(
        "/_conveyor/faults",
        json={
            "method": "POST",
            "path": "/3.0/lists/*/members",
            "status": 429,
            "times": 2,
            "in": "batch",
        },
    )
    batch_id = _submit(emulator, member_posts(list_id, 5))
    runtime.join()
    emulator.auth = as_key(KEY)
    batch = get_batch(emulator, batch_id)
    assert batch["errored_operations"] == 2
    archive = fetch_archive(emulator, batch)
    failed = [r for r in archive.results if r["status_code"] == 429]
    assert len(failed) == 2
    assert json.loads(failed[0]["response"])["detail"] == TOO_MANY
    members = emulator.get(f"/3.0/lists/{list_id}/members", auth=as_key(KEY)).json()
    assert members["total_items"] == 3
    # An "in": "batch" rule leaves HTTP requests alone.
    body = {"email_address": "direct@example.org", "status": "subscribed"}
    direct = emulator.post(f"/3.0/lists/{list_id}/members", json=body, auth=as_key(KEY))
    assert direct.status_code == 200


def test_advancing_eight_days_purges_a_batch_and_its_delivery_rows(
    emulator: TestClient, runtime: EmbeddedRuntime
) -> None:
    with running_receiver() as receiver:
        hook = emulator.post("/3.0/batch-webhooks", json={"url": receiver.url}, auth=as_key(KEY))
        hook_id = hook.json()["id"]
        batch_id = _submit(emulator, member_posts(_list(emulator), 2))
        runtime.join()
        receiver.wait_for_posts(1)
    deliveries = f"/3.0/batch-webhooks/{hook_id}/deliveries"
    assert emulator.get(deliveries, auth=as_key(KEY)).json()["total_items"] == 1

    before = emulator.get("/_conveyor/clock").json()
    moved = emulator.post("/_conveyor/clock", json={"advance": 8 * 24 * 3600})
    assert moved.status_code == 200, moved.text
    assert moved.json()["offset_seconds"] - before["offset_seconds"] == pytest.approx(
        8 * 24 * 3600, abs=5
    )
    assert emulator.get(f"/3.0/batches/{batch_id}", auth=as_key(KEY)).status_code == 404
    assert emulator.get(deliveries, auth=as_key(KEY)).json()["total_items"] == 0


def test_advancing_the_clock_sends_a_webhook_retry_that_is_due(
    emulator: TestClient, runtime: EmbeddedRuntime, services: Services
) -> None:
    with running_receiver() as receiver:
        receiver.post_statuses = [500]
        emulator.post("/3.0/batch-webhooks", json={"url": receiver.url}, auth=as_key(KEY))
        _submit(emulator, member_posts(_list(emulator), 1))
        runtime.join()
        receiver.wait_for_posts(1)
        emulator.post("/_conveyor/clock", json={"advance": 3600})
        runtime.join()
        assert len(receiver.wait_for_posts(2)) == 2


def test_the_clock_refuses_a_bad_advance(emulator: TestClient) -> None:
    for bad in ({"advance": -1}, {"advance": "soon"}, {}):
        assert emulator.post("/_conveyor/clock", json=bad).status_code == 400


def test_pace_delays_the_start_of_a_batch(emulator: TestClient, runtime: EmbeddedRuntime) -> None:
    paced = emulator.post("/_conveyor/pace", json={"batch_start_delay_ms": 400})
    assert paced.status_code == 200, paced.text
    assert paced.json() == {"batch_start_delay_ms": 400, "operations_per_second": 0.0}
    list_id = _list(emulator)
    started = time.monotonic()
    batch_id = _submit(emulator, member_posts(list_id, 2))
    time.sleep(0.1)
    waiting = emulator.get(f"/3.0/batches/{batch_id}", auth=as_key(KEY)).json()
    assert waiting["status"] == "pending"
    runtime.join()
    assert time.monotonic() - started >= 0.4
    done = emulator.get(f"/3.0/batches/{batch_id}", auth=as_key(KEY)).json()
    assert done["status"] == "finished"
    assert emulator.post("/_conveyor/pace", json={"operations_per_second": -1}).status_code == 400


def test_pace_holds_a_batch_to_its_operations_per_second(
    emulator: TestClient, runtime: EmbeddedRuntime
) -> None:
    emulator.post("/_conveyor/pace", json={"operations_per_second": 10})
    started = time.monotonic()
    _submit(emulator, member_posts(_list(emulator), 4))
    runtime.join()
    assert time.monotonic() - started >= 0.4


def test_a_reset_while_a_batch_runs_leaves_nothing_and_the_server_working(
    emulator: TestClient, runtime: EmbeddedRuntime, services: Services
) -> None:
    emulator.post("/_conveyor/pace", json={"batch_start_delay_ms": 200})
    list_id = _list(emulator)
    _submit(emulator, member_posts(list_id, 50))
    assert emulator.post("/_conveyor/reset").status_code == 200
    runtime.join()
    with services.database.read() as conn:
        left = WipeStore(services.clock).remaining_rows(conn)
    assert left == dict.fromkeys(left, 0)
    list_id = _list(emulator)
    batch_id = _submit(emulator, member_posts(list_id, 3))
    runtime.join()
    done = emulator.get(f"/3.0/batches/{batch_id}", auth=as_key(KEY)).json()
    assert (done["status"], done["finished_operations"]) == ("finished", 3)


def test_advancing_the_clock_expires_signed_urls_and_idempotency_keys(
    emulator: TestClient, runtime: EmbeddedRuntime
) -> None:
    operations = member_posts(_list(emulator), 1)
    headers = {"Idempotency-Key": "signup-42"}
    body = {"operations": operations}
    first = emulator.post("/3.0/batches", json=body, headers=headers, auth=as_key(KEY)).json()
    runtime.join()
    emulator.auth = as_key(KEY)
    url = get_batch(emulator, first["id"])["response_body_url"]
    assert emulator.get(url, auth=None).status_code == 200

    emulator.post("/_conveyor/clock", json={"advance": 11 * 60})
    assert emulator.get(url, auth=None).status_code == 403  # signed for ten minutes
    again = emulator.post("/3.0/batches", json=body, headers=headers).json()
    assert again["id"] == first["id"]  # the key still holds

    emulator.post("/_conveyor/clock", json={"advance": 24 * 3600})
    later = emulator.post("/3.0/batches", json=body, headers=headers).json()
    assert later["id"] != first["id"]  # 24 hours on, the key is free again


def test_a_fault_in_both_places_counts_its_times_across_them(
    emulator: TestClient, runtime: EmbeddedRuntime
) -> None:
    list_id = _list(emulator)
    rule = {"method": "POST", "path": "/3.0/lists/*/members", "status": 500, "times": 2}
    emulator.post("/_conveyor/faults", json={**rule, "in": "both"})
    body = {"email_address": "direct@example.org", "status": "subscribed"}
    direct = emulator.post(f"/3.0/lists/{list_id}/members", json=body, auth=as_key(KEY))
    assert direct.status_code == 500
    batch_id = _submit(emulator, member_posts(list_id, 3))
    runtime.join()
    ran = _requests(emulator, batch_id=batch_id)
    assert [e["status"] for e in ran] == [500, 200, 200]
    assert emulator.get("/_conveyor/faults").json()["faults"][0]["fired"] == 2


def test_the_journal_of_one_account(emulator: TestClient) -> None:
    emulator.get("/3.0/ping", auth=as_key(KEY))
    emulator.get("/3.0/lists", auth=as_key(OTHER_KEY))
    assert [e["path"] for e in _requests(emulator, api_key=OTHER_KEY)] == ["/3.0/lists"]
    assert emulator.delete("/_conveyor/requests", params={"api_key": KEY}).status_code == 204
    assert [e["path"] for e in _requests(emulator)] == ["/3.0/lists"]
