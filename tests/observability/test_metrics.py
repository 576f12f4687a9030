"""/metrics: counters move by exactly what happened, labels stay bounded, the batch gauge
reads the database, and the settings turn it off or put it behind a token."""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from conveyor.composition import Services, open_services
from conveyor.domain.clock import OffsetClock
from conveyor.http.app import create_app
from conveyor.settings import Settings
from tests.batches.support import create_list, drive, get_batch, member_posts, submit
from tests.conftest import new_account_key
from tests.observability.support import samples, value
from tests.webhooks.receiver import running_receiver


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    _account, key = new_account_key(services)
    with TestClient(create_app(services), base_url="http://testserver") as client:
        client.auth = httpx2.BasicAuth("anyone", key)
        yield client


def scrape(client: TestClient, **headers: str) -> str:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text


def test_operation_counters_move_by_what_the_batch_did(
    services: Services, client: TestClient
) -> None:
    list_id = create_list(client)
    good = member_posts(list_id, 9)
    bad_email = [
        {"method": "POST", "path": f"lists/{list_id}/members", "operation_id": f"bad-{i}",
         "body": json.dumps({"email_address": "not-an-email", "status": "subscribed"})}
        for i in range(3)
    ]  # fmt: skip
    unknown_list = [{"method": "GET", "path": "lists/0000000000", "operation_id": "gone"}]
    unsafe_path = [{"method": "GET", "path": "https://elsewhere.example/x", "operation_id": "u"}]
    operations = [*good, *bad_email, *unknown_list, *unsafe_path]
    random.Random(7).shuffle(operations)

    before = scrape(client)
    batch = submit(client, operations)
    drive(services, batch["id"])
    finished = get_batch(client, batch["id"])
    after = scrape(client)

    assert finished["status"] == "finished"
    assert finished["errored_operations"] == 5
    assert finished["finished_operations"] == len(operations)

    def delta(outcome: str) -> float:
        name = "conveyor_batch_operations_total"
        return value(after, name, outcome=outcome) - value(before, name, outcome=outcome)

    assert delta("failed") == finished["errored_operations"]
    assert delta("succeeded") == finished["finished_operations"] - finished["errored_operations"]


def test_http_counters_count_each_request_by_route_template(
    services: Services, client: TestClient
) -> None:
    list_id = create_list(client)
    for i in range(3):
        client.get(f"/3.0/lists/{list_id}/members/{i:032x}")
    client.get("/3.0/lists", auth=httpx2.BasicAuth("x", "0" * 32 + "-us1"))
    client.get("/no/such/path")
    client.request("BREW", "/3.0/lists")
    text = scrape(client)

    member = "/3.0/lists/{list_id}/members/{subscriber_hash}"
    name = "conveyor_http_requests_total"
    assert value(text, name, method="GET", route=member, status="404") == 3
    assert value(text, name, method="POST", route="/3.0/lists", status="200") == 1
    assert value(text, name, method="GET", route="/3.0/lists", status="401") == 1
    assert value(text, name, method="GET", route="unmatched", status="404") == 1
    assert value(text, name, method="other", route="/3.0/lists", status="405") == 1
    histogram = "conveyor_http_request_duration_seconds_count"
    assert value(text, histogram, route=member) == 3
    assert list_id not in text


def test_labels_stay_bounded_under_ten_thousand_distinct_paths(tmp_path: Path) -> None:
    services = open_services(Settings(data_dir=tmp_path / "data", secret="test-secret"))
    try:
        with TestClient(create_app(services), base_url="http://testserver") as client:
            _bounded_labels(client)
    finally:
        services.close()


def _bounded_labels(client: TestClient) -> None:
    pick = random.Random(11)

    def word() -> str:
        return "".join(pick.choices(string.ascii_lowercase + string.digits, k=12))

    shapes = [
        lambda: f"/3.0/lists/{word()}",
        lambda: f"/3.0/lists/{word()}/members/{word()}",
        lambda: f"/3.0/batches/{word()}",
        lambda: f"/3.0/batches/{word()}/operations",
        lambda: f"/3.0/{word()}/{word()}",
        lambda: f"/{word()}",
        lambda: f"/{word()}/{word()}/{word()}",
    ]
    paths = {pick.choice(shapes)() for _ in range(10_000)}
    assert len(paths) == 10_000
    for path in paths:
        client.get(path)
    found = samples(scrape(client))
    routes = {dict(labels).get("route") for (name, labels) in found if "route" in dict(labels)}
    series = [key for key in found if key[0] == "conveyor_http_requests_total"]
    assert routes <= {
        "/3.0/lists/{list_id}",
        "/3.0/lists/{list_id}/members/{subscriber_hash}",
        "/3.0/batches/{batch_id}",
        "/3.0/batches/{batch_id}/operations",
        "/metrics",
        "unmatched",
    }, routes
    assert len(series) < 20


def test_the_batch_gauge_reads_the_database(services: Services, client: TestClient) -> None:
    # Deltas: on PostgreSQL the session's other tests share the database.
    list_id = create_list(client)
    base = scrape(client)

    def moved(text: str, status: str) -> float:
        return value(text, "conveyor_batches", status=status) - value(
            base, "conveyor_batches", status=status
        )

    first = submit(client, member_posts(list_id, 2))
    submit(client, member_posts(list_id, 2, prefix="other"))
    text = scrape(client)
    assert moved(text, "pending") == 2
    assert moved(text, "finished") == 0
    drive(services, first["id"])
    text = scrape(client)
    assert moved(text, "pending") == 1
    assert moved(text, "finished") == 1
    statuses = {"pending", "preprocessing", "started", "finalizing", "finished"}
    gauge = {dict(labels)["status"] for name, labels in samples(text) if name == "conveyor_batches"}
    assert gauge == statuses


def test_each_app_has_its_own_registry(services: Services, client: TestClient) -> None:
    client.get("/healthz")
    other = services.with_settings(services.settings)
    with TestClient(create_app(other), base_url="http://testserver") as second:
        text = scrape(second)
    assert (
        value(text, "conveyor_http_requests_total", method="GET", route="/healthz", status="200")
        == 0
    )


def _app_with(settings: Settings, **changes: Any) -> tuple[Services, TestClient]:
    services = open_services(settings.model_copy(update=changes))
    return services, TestClient(create_app(services), base_url="http://testserver")


def test_metrics_can_be_turned_off(settings: Settings) -> None:
    services, client = _app_with(settings, metrics_enabled=False)
    with client:
        response = client.get("/metrics")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json; charset=utf-8"
    services.close()


def test_metrics_behind_a_bearer_token(settings: Settings) -> None:
    token = "scrape-token-0123456789"
    services, client = _app_with(settings, metrics_token=token)
    try:
        with client:
            assert client.get("/metrics").status_code == 401
            wrong = client.get("/metrics", headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert wrong.headers["www-authenticate"].startswith("Bearer")
            basic = client.get("/metrics", auth=httpx2.BasicAuth("x", token))
            assert basic.status_code == 401
            text = scrape(client, authorization=f"Bearer {token}")
            assert "conveyor_http_requests_total" in text
    finally:
        services.close()


def test_webhook_deliveries_are_counted_by_outcome(
    services: Services, client: TestClient, clock: OffsetClock
) -> None:
    with running_receiver() as receiver:
        receiver.post_statuses = [500]  # the first attempt fails, the retry succeeds
        created = client.post("/3.0/batch-webhooks", json={"url": receiver.url})
        assert created.status_code == 200, created.text
        webhook_id = created.json()["id"]
        before = scrape(client)
        batch = submit(client, member_posts(create_list(client), 2))
        drive(services, batch["id"])
        deliveries = client.get(f"/3.0/batch-webhooks/{webhook_id}/deliveries").json()
        delivery_id = deliveries["deliveries"][0]["id"]
        clock.advance(3600)
        services.webhooks.deliver(delivery_id)
        after = scrape(client)
        assert len(receiver.posts()) == 2

    def delta(outcome: str) -> float:
        name = "conveyor_webhook_deliveries_total"
        return value(after, name, outcome=outcome) - value(before, name, outcome=outcome)

    assert delta("retrying") == 1
    assert delta("delivered") == 1
    assert delta("failed") == 0
