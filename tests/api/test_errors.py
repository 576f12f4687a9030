"""Error answers: problem documents, parse and validation errors, routing, limits, 500s."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection

from conveyor.composition import Services
from conveyor.marketing import lists as lists_module
from conveyor.marketing import members as members_module
from conveyor.settings import Limits
from tests.api.conftest import ClientFactory
from tests.api.support import (
    account_state,
    add_member,
    assert_json,
    assert_problem,
    create_list,
    error_fields,
)
from tests.conftest import LIST_BODY, ApiUser


def test_every_answer_has_its_own_request_id(api: ApiUser) -> None:
    first = assert_problem(api.client.get("/3.0/nope"), 404)
    second = assert_problem(api.client.get("/3.0/nope"), 404)
    assert first["instance"] != second["instance"]
    ok = api.client.get("/3.0/ping")
    assert ok.headers["x-request-id"] and ok.headers["x-request-id"] != first["instance"]


@pytest.mark.parametrize(
    "raw",
    [
        b"{bad",
        b'{"name": }',
        b'{"name": "x"',
        b'{"name": "x"} trailing',
        b'{"name": "\xff\xfe"}',
        b"\xef\xbb\xbf{}",
        b"{'name': 'single quotes'}",
        b'{"n": NaN}',
        b"[" * 2000 + b"]" * 2000,
    ],
)
def test_malformed_json(api: ApiUser, raw: bytes) -> None:
    response = api.client.post(
        "/3.0/lists", content=raw, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 400, "JSON Parse Exception")
    assert assert_json(api.client.get("/3.0/lists"))["total_items"] == 0


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"5", b"null", b"true", b"[{}]"])
def test_body_that_is_not_an_object(api: ApiUser, list_id: str, raw: bytes) -> None:
    for path in ("/3.0/lists", f"/3.0/lists/{list_id}/members", f"/3.0/lists/{list_id}"):
        assert_problem(api.client.post(path, content=raw), 400, "Invalid Resource")


def test_missing_body_is_a_validation_error(api: ApiUser, list_id: str) -> None:
    problem = assert_problem(api.client.post(f"/3.0/lists/{list_id}/members"), 400)
    assert error_fields(problem) == {"email_address", "status"}
    assert problem["title"] == "Invalid Resource"


def test_validation_names_each_bad_field(api: ApiUser) -> None:
    body = {
        **LIST_BODY,
        "name": 1,
        "email_type_option": "no",
        "campaign_defaults": {**LIST_BODY["campaign_defaults"], "subject": None},
    }
    problem = assert_problem(api.client.post("/3.0/lists", json=body), 400, "Invalid Resource")
    assert problem["detail"] == (
        "The resource submitted could not be validated. "
        "For field-specific details, see the 'errors' array."
    )
    assert error_fields(problem) == {"name", "email_type_option", "campaign_defaults.subject"}
    messages = {e["field"]: e["message"] for e in problem["errors"]}
    assert messages["email_type_option"] == "Schema describes boolean, string found instead"
    assert messages["name"] == "Schema describes string, integer found instead"


@pytest.mark.parametrize(
    "path",
    [
        "/3.0/nope",
        "/3.0/lists/abc/nope",
        "/3.0/lists/abc/members/x/tags/extra",
        "/nope",
        "/",
        "/3.1/ping",
        "/3.0/lists/abc/members/x/actions/undelete",
    ],
)
def test_unknown_route(api: ApiUser, path: str) -> None:
    assert_problem(api.client.get(path), 404, "Resource Not Found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/3.0/lists"),
        ("DELETE", "/3.0/ping"),
        ("POST", "/3.0/ping"),
        ("PATCH", "/3.0/lists/{list_id}/members"),
        ("PUT", "/3.0/lists/{list_id}/members/x@example.com/tags"),
        ("GET", "/3.0/lists/{list_id}/members/x@example.com/actions/delete-permanent"),
        ("OPTIONS", "/3.0/ping"),
    ],
)
def test_wrong_method(api: ApiUser, list_id: str, method: str, path: str) -> None:
    response = api.client.request(method, path.format(list_id=list_id))
    assert_problem(response, 405, "Method Not Allowed")


def test_body_over_the_cap(
    api: ApiUser, list_id: str, services: Services, make_client: ClientFactory
) -> None:
    client = make_client(api.key, limits=Limits(max_body_bytes=1000))
    url = f"/3.0/lists/{list_id}/members"
    fine = {"email_address": "small@example.com", "status": "subscribed"}
    assert_json(client.post(url, json=fine))
    before = account_state(services, api.account_id)
    big = {"email_address": "big@example.com", "status": "subscribed", "x": "y" * 2000}
    assert_problem(client.post(url, json=big), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while reading
        yield b'{"email_address": "big@example.com", "status": "subscribed", "x": "'
        for _ in range(20):
            yield b"y" * 100
        yield b'"}'

    assert_problem(client.post(url, content=chunks()), 413)
    assert account_state(services, api.account_id) == before


def test_unexpected_exception_is_a_500_and_writes_nothing(
    api: ApiUser,
    list_id: str,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = account_state(services, api.account_id)

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    # Tags are applied after the member row is inserted: the insert must not survive.
    monkeypatch.setattr(members_module, "apply_tag_changes", explode)
    with caplog.at_level(logging.ERROR):
        response = api.client.post(
            f"/3.0/lists/{list_id}/members",
            json={"email_address": "half@example.com", "status": "subscribed", "tags": ["t"]},
        )
    problem = assert_problem(response, 500, "InternalServerError")
    assert "disk on fire" not in response.text
    assert any(problem["instance"] in record.getMessage() for record in caplog.records)
    assert any(record.exc_info for record in caplog.records)
    assert account_state(services, api.account_id) == before


def test_500_in_a_list_create_writes_nothing(
    api: ApiUser, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_list(api)
    before = account_state(services, api.account_id)

    store = services.marketing_stores.lists
    real_create = store.create

    def explode(conn: Connection, account_pk: int, name: str, data: object, fields: object) -> str:
        real_create(conn, account_pk, name, data, [])  # type: ignore[arg-type]
        raise RuntimeError("after the list row, before its merge fields")

    monkeypatch.setattr(store, "create", explode)
    assert_problem(api.client.post("/3.0/lists", json=LIST_BODY), 500, "InternalServerError")
    assert account_state(services, api.account_id) == before


def test_500_midway_through_batch_subscribe_writes_nothing(
    api: ApiUser, list_id: str, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_member(api, list_id, "existing@example.com")
    before = account_state(services, api.account_id)
    real_render = members_module.render_member
    calls = []

    def render_then_fail(*args: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("second member")
        return real_render(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(members_module, "render_member", render_then_fail)
    response = api.client.post(
        f"/3.0/lists/{list_id}",
        json={
            "members": [
                {"email_address": f"b{n}@example.com", "status": "subscribed"} for n in range(3)
            ]
        },
    )
    assert_problem(response, 500, "InternalServerError")
    assert account_state(services, api.account_id) == before


def test_exception_outside_the_handlers_is_a_500_problem(
    api: ApiUser, services: Services, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object) -> None:
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(services.accounts, "account_for_key", explode)
    client = make_client(api.key, raise_server_exceptions=False)
    assert_problem(client.get("/3.0/ping"), 500, "InternalServerError")


def test_request_over_the_time_limit_writes_nothing(
    api: ApiUser,
    services: Services,
    make_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client(api.key, limits=Limits(request_timeout_seconds=0.2))
    before = account_state(services, api.account_id)
    real = lists_module.default_merge_field_data
    finished: list[bool] = []

    def slow(*args: object) -> object:
        if not finished:
            time.sleep(0.4)
        finished.append(True)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(lists_module, "default_merge_field_data", slow)
    response = client.post("/3.0/lists", json=LIST_BODY)
    assert response.status_code == 504
    assert_problem(response, 504)
    deadline = time.monotonic() + 10
    while len(finished) < 5 and time.monotonic() < deadline:  # the abandoned work ends
        time.sleep(0.02)
    time.sleep(0.1)  # and rolls back
    assert account_state(services, api.account_id) == before
