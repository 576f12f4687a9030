"""GET /3.0/batches/{id}/events: `progress` events with the batch, its rate and time left, sent
when it changes, then one `finished`, and the stream ends."""

from __future__ import annotations

from typing import Any

from conveyor.composition import Services
from conveyor.domain.steps import FollowUp, Step
from conveyor.runtime.embedded import EmbeddedRuntime
from tests.batches.steer_support import Event, read_events
from tests.batches.support import assert_batch, drive, submit
from tests.conftest import ApiUser

EXTRA = {"ops_per_second", "eta_seconds"}


def events(api: ApiUser, batch_id: str) -> list[Event]:
    response = api.client.get(f"/3.0/batches/{batch_id}/events")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-request-id"]
    return read_events(response)


def batch_of(event: Event) -> dict[str, Any]:
    """The batch in an event, which must be the spec's batch plus the two progress fields."""
    data = dict(event.data)
    assert set(data) >= EXTRA, data
    assert isinstance(data.pop("ops_per_second"), float)
    eta = data.pop("eta_seconds")
    assert eta is None or isinstance(eta, float)
    data.pop("canceled_at", None)
    return assert_batch(data)


def test_a_finished_batch_sends_finished_and_ends(api: ApiUser, services: Services) -> None:
    batch = submit(api.client, [{"method": "GET", "path": "/ping"}] * 3)
    drive(services, batch["id"])
    (only,) = events(api, batch["id"])
    assert only.name == "finished"
    finished = batch_of(only)
    assert finished["status"] == "finished" and finished["finished_operations"] == 3
    assert finished["response_body_url"]  # signed, as on GET
    assert only.data["eta_seconds"] == 0.0


def test_progress_while_it_runs_then_finished(batch_api: ApiUser, runtime: EmbeddedRuntime) -> None:
    operations = [{"method": "GET", "path": "/ping", "operation_id": f"p{i}"} for i in range(3_000)]
    batch = submit(batch_api.client, operations)
    # The stream ends by itself when the batch finishes: reading it whole is the wait.
    received = events(batch_api, batch["id"])
    runtime.join()
    names = [event.name for event in received]
    assert names[-1] == "finished" and set(names[:-1]) == {"progress"}, names
    assert len(names) >= 2
    progress = [batch_of(event) for event in received[:-1]]
    done = [event.data["finished_operations"] for event in received]
    assert done == sorted(done), "finished_operations went backwards"
    assert done[-1] == 3_000
    # Sent only on change: no two progress events alike.
    seen = [(b["status"], b["finished_operations"]) for b in progress]
    assert len(seen) == len(set(seen))
    assert batch_of(received[-1])["status"] == "finished"
    running = [event.data for event in received[:-1] if event.data["status"] == "started"]
    assert any(data["ops_per_second"] > 0 for data in running) or len(running) <= 1


def test_a_canceled_batch_ends_with_finished(
    api: ApiUser, runtime: EmbeddedRuntime, services: Services
) -> None:
    batch = submit(api.client, [{"method": "GET", "path": "/ping"}] * 10)  # no worker sent
    canceled = api.client.post(f"/3.0/batches/{batch['id']}/cancel").json()
    runtime.dispatcher.send([FollowUp(Step.FINALIZE, batch["id"])])
    received = events(api, batch["id"])
    assert received[-1].name == "finished"
    assert received[-1].data["canceled_at"] == canceled["canceled_at"]
    assert received[-1].data["finished_operations"] == 0
    for event in received:
        assert event.data["eta_seconds"] == 0.0  # nothing left to run once canceled
