"""Batch webhooks against a real `conveyor serve`: the official client, a crash before the
delivery got through, and the pending-events limit."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import mailchimp_marketing
import pytest

from tests.conftest import LIST_BODY
from tests.e2e.conftest import StartServer
from tests.e2e.server import ServerProcess
from tests.shape_check import install_shape_check_from_env
from tests.webhooks.receiver import running_receiver

pytestmark = pytest.mark.e2e

FAST_RETRIES = {
    "CONVEYOR_BATCH_WEBHOOK_FIRST_RETRY_SECONDS": "0.5",
    "CONVEYOR_BATCH_WEBHOOK_TIMEOUT_SECONDS": "2",
}


def api(server: ServerProcess) -> httpx.Client:
    client = httpx.Client(base_url=server.api_url, auth=("e2e", server.key), timeout=30)
    install_shape_check_from_env(client)
    return server.owned(client)


def small_batch(client: httpx.Client, list_id: str, tag: str) -> dict[str, Any]:
    operations = [
        {
            "method": "POST",
            "path": f"/lists/{list_id}/members",
            "body": json.dumps({"email_address": f"{tag}{i}@example.org", "status": "subscribed"}),
        }
        for i in range(3)
    ]
    response = client.post("/batches", json={"operations": operations})
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_until(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float) -> Any:
    """Poll a remote process's state through its API, within a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"not reached in {timeout} s: {value}"
        time.sleep(0.05)


def test_official_client_creates_lists_updates_and_removes_a_webhook(
    server: ServerProcess,
) -> None:
    client = mailchimp_marketing.Client()
    client.set_config({"api_key": server.key, "server": "us1"})
    client.api_client.host = server.api_url
    with running_receiver() as receiver:
        created = client.batchWebhooks.create({"url": receiver.url})
        assert created["url"] == receiver.url and created["enabled"] is True
        assert [r.method for r in receiver.requests] == ["GET"]  # validated with a GET
        listed = client.batchWebhooks.list()
        assert listed["total_items"] == 1
        assert listed["webhooks"][0]["id"] == created["id"]
        updated = client.batchWebhooks.update(created["id"], {"enabled": False})
        assert updated["enabled"] is False
        assert client.batchWebhooks.get(created["id"])["enabled"] is False
        client.batchWebhooks.remove(created["id"])
        assert client.batchWebhooks.list()["total_items"] == 0


def test_a_delivery_pending_at_a_crash_is_delivered_once_after_restart(
    start_server: StartServer,
) -> None:
    server = start_server(env=FAST_RETRIES)
    with running_receiver() as receiver:
        url = receiver.url
        with api(server) as client:
            hook = client.post("/batch-webhooks", json={"url": url}).json()
    # The receiver is down when the batch finishes: the delivery waits in the outbox.
    with api(server) as client:
        list_id = client.post("/lists", json=LIST_BODY).json()["id"]
        batch = small_batch(client, list_id, "crash")
        log_url = f"/batch-webhooks/{hook['id']}/deliveries"
        wait_until(
            lambda: client.get(log_url).json()["deliveries"],
            lambda found: bool(found) and found[0]["attempts"] >= 1,
            timeout=30,
        )
    server.kill()

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with running_receiver(port=port) as back:
        server.restart()
        [post] = back.wait_for_posts(1, timeout=30)
        form = {key: values[0] for key, values in parse_qs(post.body.decode()).items()}
        assert form["data[id]"] == batch["id"]
        with api(server) as client:
            delivery = wait_until(
                lambda: client.get(log_url).json()["deliveries"][0],
                lambda found: found["state"] == "delivered",
                timeout=30,
            )
            successes = [a for a in delivery["history"] if a["status_code"] == 200]
            assert len(successes) == 1, delivery
        # Nothing more arrives: the success is recorded once and not sent again.
        time.sleep(1.5)
        assert len(back.posts()) == 1


def test_pending_webhook_events_limit_refuses_new_batches(start_server: StartServer) -> None:
    env = {**FAST_RETRIES, "CONVEYOR_BATCH_MAX_PENDING_WEBHOOKS": "1",
           "CONVEYOR_BATCH_WEBHOOK_FIRST_RETRY_SECONDS": "600"}  # fmt: skip
    server = start_server(env=env)
    with running_receiver() as receiver:
        url = receiver.url
        with api(server) as client:
            client.post("/batch-webhooks", json={"url": url}).raise_for_status()
    with api(server) as client:
        list_id = client.post("/lists", json=LIST_BODY).json()["id"]
        first = small_batch(client, list_id, "limit")
        wait_until(
            lambda: client.get(f"/batches/{first['id']}").json()["status"],
            lambda status: status == "finished",
            timeout=30,
        )
        refused = client.post("/batches", json={"operations": [{"method": "GET", "path": "/ping"}]})
        assert refused.status_code == 429
        problem = refused.json()
        assert problem["detail"] == (
            "You have more than 1 pending webhooks. "
            "Please wait for some to complete before adding any more batches."
        )
        assert refused.headers["content-type"].startswith("application/problem+json")
