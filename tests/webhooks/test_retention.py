"""Retention drops a batch's delivery rows with the batch; pending deliveries stay."""

from __future__ import annotations

import json

from conveyor.composition import Services
from conveyor.domain.clock import OffsetClock
from conveyor.runtime.embedded import EmbeddedRuntime
from tests.conftest import LIST_BODY, ApiUser
from tests.webhooks.receiver import Receiver


def _deliveries(api: ApiUser, webhook_id: str) -> int:
    response = api.client.get(f"/3.0/batch-webhooks/{webhook_id}/deliveries")
    assert response.status_code == 200, response.text
    return int(response.json()["total_items"])


def test_delivery_rows_are_purged_with_their_batch(
    batch_api: ApiUser,
    receiver: Receiver,
    runtime: EmbeddedRuntime,
    services: Services,
    clock: OffsetClock,
) -> None:
    hook = batch_api.client.post("/3.0/batch-webhooks", json={"url": receiver.url}).json()
    list_id = batch_api.client.post("/3.0/lists", json=LIST_BODY).json()["id"]
    body = json.dumps({"email_address": "kept@example.org", "status": "subscribed"})
    operations = [{"method": "POST", "path": f"/lists/{list_id}/members", "body": body}]
    batch = batch_api.client.post("/3.0/batches", json={"operations": operations}).json()
    runtime.join()
    receiver.wait_for_posts(1)
    assert _deliveries(batch_api, hook["id"]) == 1

    # A day short of retention, nothing goes.
    retention = services.settings.batches.retention_seconds
    clock.advance(retention - 24 * 3600)
    runtime.scheduler.tick()
    assert batch_api.client.get(f"/3.0/batches/{batch['id']}").status_code == 200
    assert _deliveries(batch_api, hook["id"]) == 1

    # Past it, the batch and its delivery row go together; the webhook stays.
    clock.advance(2 * 24 * 3600)
    runtime.scheduler.tick()
    assert batch_api.client.get(f"/3.0/batches/{batch['id']}").status_code == 404
    assert _deliveries(batch_api, hook["id"]) == 0
    assert batch_api.client.get(f"/3.0/batch-webhooks/{hook['id']}").status_code == 200
