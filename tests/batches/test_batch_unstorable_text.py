"""Text no database can store (a lone surrogate, NUL): a 400 problem, the same on SQLite and
PostgreSQL, and nothing stored; the same characters properly escaped are kept as sent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conveyor.composition import Services
from tests.batches.support import (
    account_batch_ids,
    assert_problem,
    drive,
    fetch_archive,
    orphan_rows,
    submit,
)
from tests.conftest import ApiUser

# Written as JSON text: json.dumps would refuse nothing, but a client's encoder may.
UNSTORABLE: dict[str, tuple[bytes, str | None]] = {
    "lone low surrogate in path": (
        b'{"operations": [{"method": "GET", "path": "/lists/\\udc00"}]}',
        None,
    ),
    "lone low surrogate in operation_id": (
        b'{"operations": [{"method": "GET", "path": "lists", "operation_id": "\\udfff"}]}',
        None,
    ),
    "lone low surrogate in a body string": (
        b'{"operations": [{"method": "POST", "path": "lists",'
        b' "body": "{\\"name\\": \\"\\udc01\\"}"}]}',
        None,
    ),
    "lone low surrogate in a body object": (
        b'{"operations": [{"method": "POST", "path": "lists", "body": {"name": "\\udc01"}}]}',
        None,
    ),
    "reversed pair in params": (
        b'{"operations": [{"method": "GET", "path": "lists", "params": {"a": "\\udc00\\ud800"}}]}',
        None,
    ),
    "NUL in path": (
        b'{"operations": [{"method": "GET", "path": "lists"},'
        b' {"method": "GET", "path": "/lists/a\\u0000b"}]}',
        "operations[1].path",
    ),
    "NUL in operation_id": (
        b'{"operations": [{"method": "GET", "path": "lists", "operation_id": "\\u0000"}]}',
        "operations[0].operation_id",
    ),
    "NUL in a body string": (
        b'{"operations": [{"method": "POST", "path": "lists", "body": "{}\\u0000"}]}',
        "operations[0].body",
    ),
    "NUL in a param name": (
        b'{"operations": [{"method": "GET", "path": "lists", "params": {"a\\u0000": "1"}}]}',
        "operations[0].params",
    ),
    "NUL in a param value": (
        b'{"operations": [{"method": "GET", "path": "lists", "params": {"count": "1\\u0000"}}]}',
        "operations[0].params.count",
    ),
}


@pytest.mark.parametrize("name", list(UNSTORABLE))
def test_unstorable_text_is_a_400_and_nothing_is_stored(
    api: ApiUser, services: Services, name: str
) -> None:
    body, field = UNSTORABLE[name]
    response = api.client.post(
        "/3.0/batches", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    problem = assert_problem(response, 400)
    assert problem["title"] in ("Invalid Resource", "JSON Parse Exception"), problem
    if field is not None:
        assert problem["errors"][0]["field"] == field, problem
        assert "NUL" in problem["detail"]
    assert account_batch_ids(services, api.account_id) == []
    assert orphan_rows(services) == {"batch_operations": 0, "batch_chunks": 0, "batch_results": 0}


@pytest.mark.parametrize("where", ["path", "operation_id", "body"])
def test_a_lone_high_surrogate_is_refused_or_kept_as_storable_text(
    api: ApiUser, services: Services, where: str
) -> None:
    """The parser's C backend reads a high surrogate without its low half as `?`; whichever
    way a parser reads it, the batch is refused or runs to its end: never a 5xx."""
    operation = {"method": "GET", "path": "/lists", where: "x"}
    body = json.dumps({"operations": [operation]}).replace('"x"', '"x\\ud800y"').encode()
    response = api.client.post(
        "/3.0/batches", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert_problem(response, 400)
        return
    batch_id = response.json()["id"]
    drive(services, batch_id)
    batch = api.client.get(f"/3.0/batches/{batch_id}").json()
    assert batch["status"] == "finished"
    [result] = fetch_archive(api.client, batch).results
    assert "\ud800" not in json.dumps(result, ensure_ascii=False)


def test_the_same_characters_escaped_inside_a_body_string_are_kept(
    api: ApiUser, services: Services
) -> None:
    """`\\\\u0000` and a surrogate pair inside an operation's JSON body are text, not NUL."""
    body = {"name": "a\u0000b 🦄"}  # json.dumps escapes both: the stored string is ASCII
    operations: list[dict[str, Any]] = [
        {"method": "POST", "path": "/lists", "body": json.dumps(body), "operation_id": "🦄-1"}
    ]
    batch = submit(api.client, operations)
    drive(services, batch["id"])
    archive = fetch_archive(api.client, api.client.get(f"/3.0/batches/{batch['id']}").json())
    [result] = archive.results
    assert result["operation_id"] == "🦄-1"
    assert result["status_code"] == 400  # not a valid list; the body reached the handler
