"""Batch webhooks reach a real receiver on loopback, from whichever worker runs them."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest
from sqlalchemy import update

from conveyor.domain.retry import RetryPolicy
from conveyor.storage.tables import webhook_deliveries
from tests.contract.stack import Drop, Stack
from tests.contract.support import create_list, fetch_results, get_batch, member_posts, submit
from tests.webhooks.receiver import Receiver, running_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.mark.parametrize("lost", [False, True], ids=["sent", "lost-then-swept"])
def test_completion_webhook_is_delivered_signed(
    stack: Stack, receiver: Receiver, lost: bool
) -> None:
    drop = Drop("deliver")
    drop.active = lost
    stack.add_middleware(drop)
    with stack.user() as user:
        client = user.client
        created = client.post("/3.0/batch-webhooks", json={"url": receiver.url})
        assert created.status_code == 200, created.text
        hook = created.json()
        list_id = create_list(client)
        operations = member_posts(list_id, 3)
        operations.append({"method": "GET", "path": "lists/0000000000"})
        batch = submit(client, operations)
        stack.join()

        if lost:
            # The delivery's message was lost: the outbox row is still there, and the
            # reconciler's sweep sends it again.
            assert drop.dropped == 1
            assert receiver.posts() == []
            drop.active = False
            stack.scheduler().tick(idle_seconds=0)
            stack.join()

        [post] = receiver.wait_for_posts(1)
        assert post.headers["Content-Type"] == "application/x-www-form-urlencoded"
        form = {key: values[0] for key, values in parse_qs(post.body.decode()).items()}
        status = get_batch(client, batch["id"])
        assert form["type"] == "batch_operation_completed"
        assert form["data[id]"] == batch["id"]
        assert form["data[status]"] == "finished"
        assert form["data[total_operations]"] == "4"
        assert form["data[finished_operations]"] == "4"
        assert form["data[errored_operations]"] == "1"
        assert form["data[completed_at]"] == status["completed_at"]
        # Signed with the webhook's secret, checked independently of the server's code.
        header = post.headers["X-Mailchimp-Signature"]
        parts = dict(part.split("=", 1) for part in header.split(","))
        expected = hmac.new(
            hook["secret"].encode(), f"{parts['t']}.".encode() + post.body, hashlib.sha256
        ).hexdigest()
        assert hmac.compare_digest(parts["v1"], expected)
        # The URL in the delivery downloads the same archive as the status read's.
        delivered = dict(status, response_body_url=form["data[response_body_url]"])
        assert len(fetch_results(client, delivered)) == 4

        log = client.get(f"/3.0/batch-webhooks/{hook['id']}/deliveries").json()
        [delivery] = log["deliveries"]
        assert delivery["state"] == "delivered"


def test_a_retry_due_later_waits_in_the_database_not_in_the_broker(
    stack: Stack, receiver: Receiver
) -> None:
    """RabbitMQ requeues a delivery left unacknowledged past its consumer_timeout (30 min), and
    Dramatiq holds a delayed message unacknowledged until its eta: a retry due in an hour must
    not be parked in the broker. Its row waits; the reconciler sends it once due."""
    stack.services.webhooks.retry = RetryPolicy(first_delay_seconds=3600, jitter=0)
    receiver.post_statuses = [503]
    with stack.user() as user:
        client = user.client
        created = client.post("/3.0/batch-webhooks", json={"url": receiver.url})
        assert created.status_code == 200, created.text
        hook = created.json()
        submit(client, [{"method": "GET", "path": "lists"}])
        stack.join()  # returns at once: nothing is left in the broker

        assert [r.method for r in receiver.posts()] == ["POST"]
        log = client.get(f"/3.0/batch-webhooks/{hook['id']}/deliveries").json()
        [delivery] = log["deliveries"]
        assert (delivery["state"], delivery["attempts"]) == ("queued", 1)
        for actor in stack.dispatcher.actors.values():
            assert actor.options["time_limit"] < 30 * 60 * 1000

        # An hour later (moved on in the database rather than waited for)...
        with stack.services.database.write() as conn:
            conn.execute(update(webhook_deliveries).values(next_attempt_ts=time.time() - 1))
        stack.scheduler().tick(idle_seconds=0)
        stack.join()
        receiver.wait_for_posts(2)
        log = client.get(f"/3.0/batch-webhooks/{hook['id']}/deliveries").json()
        assert log["deliveries"][0]["state"] == "delivered"
