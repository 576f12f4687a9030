"""Helpers of the contract suite: batches through the API, archives read strictly."""

from __future__ import annotations

import io
import json
import re
import tarfile
from typing import Any

import httpx2

from tests.conftest import LIST_BODY

MEMBER_NAME = re.compile(r"^[0-9a-f]{32}\.json$")


def create_list(client: httpx2.Client) -> str:
    response = client.post("/3.0/lists", json=LIST_BODY)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def member_posts(list_id: str, count: int, *, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "method": "POST",
            "path": f"lists/{list_id}/members",
            "operation_id": f"add-{i}",
            "body": json.dumps({"email_address": f"user{i}@example.org", "status": "subscribed"}),
        }
        for i in range(start, start + count)
    ]


def submit(client: httpx2.Client, operations: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post("/3.0/batches", json={"operations": operations})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "pending", body
    assert body["total_operations"] == len(operations)
    return body


def get_batch(client: httpx2.Client, batch_id: str) -> dict[str, Any]:
    response = client.get(f"/3.0/batches/{batch_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def list_members(client: httpx2.Client, list_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/3.0/lists/{list_id}/members", params={"count": 1000})
    assert response.status_code == 200, response.text
    members: list[dict[str, Any]] = response.json()["members"]
    return members


def download(client: httpx2.Client, url: str) -> httpx2.Response:
    """GET a response_body_url with no API key: the signature is the only credential."""
    response = client.get(url, auth=None)
    assert "authorization" not in response.request.headers
    return response


def read_archive(content: bytes) -> list[list[dict[str, Any]]]:
    """The files of an archive, read as a strict client would: a gzipped tar of `<hex>.json`
    files only (no `./` entry, no directories), each a JSON array of results."""
    files: list[list[dict[str, Any]]] = []
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
        names = tar.getnames()
        assert "./" not in names and "." not in names, names
        for member in tar.getmembers():
            assert member.isfile(), member.name
            assert MEMBER_NAME.fullmatch(member.name), member.name
            handle = tar.extractfile(member)
            assert handle is not None
            payload = json.loads(handle.read())
            assert isinstance(payload, list), member.name
            for result in payload:
                assert list(result) == ["status_code", "operation_id", "response"], result
                assert isinstance(result["status_code"], int)
                assert result["operation_id"] is None or isinstance(result["operation_id"], str)
                assert isinstance(result["response"], str)
            files.append(payload)
    assert len(set(names)) == len(names), names
    return files


def fetch_results(client: httpx2.Client, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """Download a finished batch's archive through its response_body_url and check that the
    counters equal its contents."""
    assert batch["status"] == "finished", batch
    response = download(client, batch["response_body_url"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    results = [result for file in read_archive(response.content) for result in file]
    assert batch["total_operations"] == len(results)
    assert batch["finished_operations"] == len(results)
    assert batch["errored_operations"] == sum(
        1 for r in results if not 200 <= r["status_code"] <= 299
    )
    return results


def by_operation_id(results: list[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    grouped: dict[str | None, list[dict[str, Any]]] = {}
    for result in results:
        grouped.setdefault(result["operation_id"], []).append(result)
    return grouped


def response_of(result: dict[str, Any]) -> Any:
    """The operation's response body, which the archive holds as a JSON string."""
    return json.loads(result["response"]) if result["response"] else None
