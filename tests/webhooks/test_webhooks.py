"""Batch webhooks against a real receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qs

import pytest

from conveyor.batches.webhook_http import resolve_checked
from conveyor.domain.webhook_targets import RefusedTarget, TargetPolicy
from conveyor.runtime.embedded import EmbeddedRuntime
from tests.conftest import LIST_BODY, ApiUser
from tests.webhooks.receiver import Receiver, running_receiver


def _submit_small_batch(api: ApiUser, count: int = 3) -> dict[str, Any]:
    list_id = api.client.post("/3.0/lists", json=LIST_BODY).json()["id"]
    operations = [
        {
            "method": "POST",
            "path": f"/lists/{list_id}/members",
            "body": json.dumps({"email_address": f"w{i}@example.org", "status": "subscribed"}),
        }
        for i in range(count)
    ]
    operations.append({"method": "GET", "path": "/lists/nope"})
    response = api.client.post("/3.0/batches", json={"operations": operations})
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _create_webhook(api: ApiUser, url: str, **extra: Any) -> dict[str, Any]:
    response = api.client.post("/3.0/batch-webhooks", json={"url": url, **extra})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_create_validates_with_get_and_returns_secret_once(
    batch_api: ApiUser, receiver: Receiver
) -> None:
    created = _create_webhook(batch_api, receiver.url)
    assert [r.method for r in receiver.requests] == ["GET"]
    assert set(created) == {"id", "url", "enabled", "_links", "secret"}
    assert created["enabled"] is True and len(created["secret"]) == 64
    fetched = batch_api.client.get(f"/3.0/batch-webhooks/{created['id']}").json()
    assert "secret" not in fetched
    listed = batch_api.client.get("/3.0/batch-webhooks").json()
    assert listed["total_items"] == 1 and listed["webhooks"][0]["id"] == created["id"]


def test_unreachable_or_failing_url_is_refused_and_nothing_stored(
    batch_api: ApiUser, receiver: Receiver
) -> None:
    receiver.get_status = 404
    failing = batch_api.client.post("/3.0/batch-webhooks", json={"url": receiver.url})
    assert failing.status_code == 400
    assert failing.headers["content-type"].startswith("application/problem+json")
    assert "404" in failing.json()["detail"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = batch_api.client.post(
        "/3.0/batch-webhooks", json={"url": f"http://127.0.0.1:{closed_port}/x"}
    )
    assert unreachable.status_code == 400
    assert "could not be validated" in unreachable.json()["detail"]
    assert batch_api.client.get("/3.0/batch-webhooks").json()["total_items"] == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/x",
        "http://0.0.0.0/x",
        "http://224.0.0.1/x",
        "file:///etc/passwd",
        "ftp://127.0.0.1/x",
        "gopher://127.0.0.1/x",
        "http://user:pw@127.0.0.1/x",
    ],
)
def test_refused_targets(batch_api: ApiUser, url: str) -> None:
    response = batch_api.client.post("/3.0/batch-webhooks", json={"url": url})
    assert response.status_code == 400, response.text
    assert response.json()["title"] == "Invalid Resource"


def test_name_resolving_to_link_local_is_refused() -> None:
    def resolver(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]

    with pytest.raises(RefusedTarget, match="link-local"):
        resolve_checked("metadata.example", 80, TargetPolicy(), resolver)
    # Loopback and private ranges are allowed by default, refusable by policy.
    assert resolve_checked("127.0.0.1", 80, TargetPolicy()) == "127.0.0.1"
    with pytest.raises(RefusedTarget):
        resolve_checked("10.1.2.3", 80, TargetPolicy(allow_private=False))


def test_at_most_twenty_webhooks(batch_api: ApiUser, receiver: Receiver) -> None:
    for _ in range(20):
        _create_webhook(batch_api, receiver.url)
    response = batch_api.client.post("/3.0/batch-webhooks", json={"url": receiver.url})
    assert response.status_code == 400
    assert "20" in response.json()["detail"]


def test_delivery_has_every_field_and_a_valid_signature(
    batch_api: ApiUser, receiver: Receiver, runtime: EmbeddedRuntime
) -> None:
    hook = _create_webhook(batch_api, receiver.url)
    batch = _submit_small_batch(batch_api)
    runtime.join()
    [post] = receiver.wait_for_posts(1)
    assert post.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = {key: values[0] for key, values in parse_qs(post.body.decode()).items()}
    status = batch_api.client.get(f"/3.0/batches/{batch['id']}").json()
    assert form["type"] == "batch_operation_completed"
    assert len(form["fired_at"]) == 19 and "T" not in form["fired_at"]
    assert form["data[id]"] == batch["id"]
    assert form["data[status]"] == "finished"
    assert form["data[total_operations]"] == "4"
    assert form["data[finished_operations]"] == "4"
    assert form["data[errored_operations]"] == "1"
    assert form["data[submitted_at]"] == status["submitted_at"]
    assert form["data[completed_at]"] == status["completed_at"]
    assert form["data[completed_at]"].endswith("+00:00")
    assert form["data[response_body_url]"].startswith("http://testserver/3.0/batches/")
    for index, link in enumerate(status["_links"]):
        for key, value in link.items():
            assert form[f"data[_links][{index}][{key}]"] == value
    # The signature, checked independently of the server's code.
    timestamp, signature = (part.split("=", 1)[1] for part in
                            post.headers["X-Mailchimp-Signature"].split(","))  # fmt: skip
    expected = hmac.new(
        hook["secret"].encode(), f"{timestamp}.".encode() + post.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(signature, expected)
    # The URL in the webhook downloads the archive.
    assert batch_api.client.get(form["data[response_body_url]"], auth=None).status_code == 200


def test_failing_receiver_is_retried_with_growing_gaps(
    batch_api: ApiUser, receiver: Receiver, runtime: EmbeddedRuntime
) -> None:
    hook = _create_webhook(batch_api, receiver.url)
    receiver.post_statuses = [500, 502, 503]
    _submit_small_batch(batch_api)
    posts = receiver.wait_for_posts(4)
    gaps = [later.at - earlier.at for earlier, later in pairwise(posts)]
    # The schedule doubles from 0.2 s, each delay jittered down to half: never shorter than
    # its floor, and two steps on always longer than the first (4 x 0.5 > 1).
    floors = [0.2 * 2**attempt * 0.5 for attempt in range(3)]
    assert all(gap >= floor * 0.95 for gap, floor in zip(gaps, floors, strict=True)), gaps
    assert gaps[2] > gaps[0] * 1.5, gaps
    runtime.join()
    log = batch_api.client.get(f"/3.0/batch-webhooks/{hook['id']}/deliveries").json()
    [delivery] = log["deliveries"]
    assert delivery["state"] == "delivered"
    assert [a["status_code"] for a in delivery["history"]] == [500, 502, 503, 200]


def test_receiver_down_at_finish_gets_it_later(
    batch_api: ApiUser, runtime: EmbeddedRuntime
) -> None:
    with running_receiver() as receiver:
        url = receiver.url
        hook = _create_webhook(batch_api, url)
    # The receiver is gone: the batch finishes while nobody listens.
    _submit_small_batch(batch_api)

    def first_attempt_failed() -> bool:
        log = batch_api.client.get(f"/3.0/batch-webhooks/{hook['id']}/deliveries").json()
        return bool(log["deliveries"]) and log["deliveries"][0]["attempts"] >= 1

    # The runtime is remote from here in spirit: observe its state through the API.
    wait_until(first_attempt_failed, timeout=20)
    log = batch_api.client.get(f"/3.0/batch-webhooks/{hook['id']}/deliveries").json()
    assert log["deliveries"][0]["state"] == "queued"
    assert log["deliveries"][0]["last_error"]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with running_receiver(port=port) as back:
        back.wait_for_posts(1)


def test_redeliver_and_pending_limit(
    batch_api: ApiUser, receiver: Receiver, runtime: EmbeddedRuntime
) -> None:
    hook = _create_webhook(batch_api, receiver.url)
    _submit_small_batch(batch_api)
    receiver.wait_for_posts(1)
    runtime.join()
    deliveries = batch_api.client.get(f"/3.0/batch-webhooks/{hook['id']}/deliveries").json()
    delivery_id = deliveries["deliveries"][0]["id"]
    again = batch_api.client.post(
        f"/3.0/batch-webhooks/{hook['id']}/deliveries/{delivery_id}/redeliver"
    )
    assert again.status_code == 200, again.text
    receiver.wait_for_posts(2)


def test_other_account_cannot_see_or_change_webhooks(
    batch_api: ApiUser, batch_other_api: ApiUser, receiver: Receiver
) -> None:
    hook = _create_webhook(batch_api, receiver.url)
    other = batch_other_api.client
    assert other.get(f"/3.0/batch-webhooks/{hook['id']}").status_code == 404
    assert (
        other.patch(f"/3.0/batch-webhooks/{hook['id']}", json={"enabled": False}).status_code == 404
    )
    assert other.delete(f"/3.0/batch-webhooks/{hook['id']}").status_code == 404
    assert other.get("/3.0/batch-webhooks").json()["total_items"] == 0
    assert batch_api.client.delete(f"/3.0/batch-webhooks/{hook['id']}").status_code == 204
    assert batch_api.client.get(f"/3.0/batch-webhooks/{hook['id']}").status_code == 404
