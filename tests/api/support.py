"""Assertions and helpers shared by the API tests."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx2
from sqlalchemy import select

from conveyor.composition import Services
from conveyor.storage.tables import accounts_table, lists, members, merge_fields, tags
from tests.api.spec import assert_shape
from tests.conftest import LIST_BODY, ApiUser

PROBLEM_TYPE = "application/problem+json; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def assert_problem(
    response: httpx2.Response, status: int, title: str | None = None
) -> dict[str, Any]:
    """A Mailchimp problem document: content type, five fields, instance == X-Request-Id."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_TYPE, response.headers
    body = response.json()
    assert isinstance(body, dict)
    assert set(body) >= PROBLEM_KEYS, body
    assert set(body) <= PROBLEM_KEYS | {"errors"}, body
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["instance"] == response.headers["x-request-id"]
    assert_shape(body, schema="AccountExports")
    if title is not None:
        assert body["title"] == title, body
    for error in body.get("errors", []):
        assert set(error) == {"field", "message"}, error
    return body


def error_fields(problem: dict[str, Any]) -> set[str]:
    return {error["field"] for error in problem.get("errors", [])}


def assert_json(response: httpx2.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == JSON_TYPE
    assert response.headers["x-request-id"]
    return response.json()


def create_list(api: ApiUser, **changes: Any) -> dict[str, Any]:
    return dict(assert_json(api.client.post("/3.0/lists", json={**LIST_BODY, **changes})))


def add_member(
    api: ApiUser, list_id: str, email: str, status: str = "subscribed", **fields: Any
) -> dict[str, Any]:
    response = api.client.post(
        f"/3.0/lists/{list_id}/members",
        json={"email_address": email, "status": status, **fields},
    )
    return dict(assert_json(response))


def account_state(services: Services, account_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored row that belongs to one account, for "nothing was written" checks."""
    with services.database.read() as conn:
        account_pk = conn.execute(
            select(accounts_table.c.id).where(accounts_table.c.account_id == account_id)
        ).scalar_one()
        list_pks = select(lists.c.pk).where(lists.c.account_pk == account_pk)
        state: dict[str, list[tuple[Any, ...]]] = {}
        for name, table, condition in (
            ("lists", lists, lists.c.account_pk == account_pk),
            ("members", members, members.c.list_pk.in_(list_pks)),
            ("merge_fields", merge_fields, merge_fields.c.list_pk.in_(list_pks)),
            ("tags", tags, tags.c.list_pk.in_(list_pks)),
        ):
            rows = conn.execute(select(table).where(condition)).all()
            state[name] = sorted((tuple(map(repr, row)) for row in rows), key=repr)
        return state
