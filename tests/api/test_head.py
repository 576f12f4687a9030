"""HEAD answers what GET answers, without the body, on every route; other methods a route
does not serve are a 405 problem, whatever the route."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from conveyor.composition import Services
from conveyor.http.app import create_app
from tests.api.support import add_member, assert_problem, md5
from tests.conftest import ApiUser
from tests.webhooks.receiver import running_receiver


def _paths(api: ApiUser, services: Services, list_id: str) -> list[str]:
    add_member(api, list_id, "head@example.org")
    batch = api.client.post(
        "/3.0/batches", json={"operations": [{"method": "GET", "path": "/ping"}]}
    ).json()
    with running_receiver() as receiver:
        hook = api.client.post("/3.0/batch-webhooks", json={"url": receiver.url}).json()
    return [
        "/3.0",
        "/3.0/",
        "/3.0/ping",
        f"/3.0/lists/{list_id}",
        f"/3.0/lists/{list_id}/members",
        f"/3.0/lists/{list_id}/members/{md5('head@example.org')}",
        f"/3.0/lists/{list_id}/members/{md5('head@example.org')}/tags",
        f"/3.0/lists/{list_id}/merge-fields/1",
        "/3.0/lists?fields=lists.id",
        "/3.0/batches",
        f"/3.0/batches/{batch['id']}",
        "/3.0/batch-webhooks",
        f"/3.0/batch-webhooks/{hook['id']}",
        f"/3.0/batch-webhooks/{hook['id']}/deliveries",
        f"/3.0/batch-webhooks/{hook['id']}/deliveries/x/redeliver",  # POST only
        # Errors too: the same problem status and headers.
        "/3.0/lists/nope",
        "/3.0/batches/nope",
        "/3.0/nothing/here",
        "/nothing",
        f"/3.0/batches/{batch['id']}/response.tar.gz?expires=1&signature=x",
        "/healthz",
    ]


def test_head_is_get_without_the_body(api: ApiUser, services: Services, list_id: str) -> None:
    for path in _paths(api, services, list_id):
        got = api.client.get(path)
        head = api.client.head(path)
        assert head.status_code == got.status_code, (path, head.status_code, got.text)
        assert head.content == b"", path
        assert head.headers.get("content-type") == got.headers.get("content-type"), path
        assert head.headers.get("content-length") == got.headers.get("content-length"), path
        assert ("x-request-id" in head.headers) == ("x-request-id" in got.headers), path


def test_head_without_a_key_is_the_same_401(services: Services) -> None:
    with TestClient(create_app(services), base_url="http://testserver") as client:
        for path in ("/3.0/ping", "/3.0/lists", "/3.0/batches", "/3.0/batch-webhooks"):
            got, head = client.get(path), client.head(path)
            assert (head.status_code, got.status_code) == (401, 401), path
            assert head.content == b""
            assert head.headers["content-type"] == got.headers["content-type"]


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "CONNECT", "PROPFIND", "FOO"])
@pytest.mark.parametrize(
    "path", ["/3.0/ping", "/3.0/lists", "/3.0/batches", "/3.0/batch-webhooks", "/3.0/nope"]
)
def test_other_methods_are_a_405_problem(api: ApiUser, method: str, path: str) -> None:
    assert_problem(api.client.request(method, path), 405, "Method Not Allowed")
