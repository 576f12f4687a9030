"""One account's slow receivers cannot delay another account: its deliveries hold at most
`webhook_account_concurrency` sending threads (counted in the database, across processes),
and its webhook creates, waiting on its receiver, hold connection slots of its own and no
thread."""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from conveyor.batches.webhooks import DeliveryOutcome, WebhookService
from conveyor.composition import Services, open_services
from conveyor.domain.states import DeliveryState
from conveyor.http.app import create_app
from conveyor.runtime.embedded import EmbeddedRuntime
from conveyor.settings import BatchSettings, Settings
from conveyor.storage.tables import webhook_deliveries
from tests.conftest import ApiUser, new_account_key
from tests.webhooks.deliveries import add_webhooks, enqueue, new_account
from tests.webhooks.gated import GatedReceiver, gated_receiver
from tests.webhooks.receiver import Receiver

CAP = 2


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret="test-secret",
        batches=BatchSettings(
            webhook_threads=4,
            webhook_account_concurrency=CAP,
            webhook_max_attempts=1,
            webhook_timeout_seconds=10.0,
            sweep_interval_seconds=0.5,
            sweep_idle_seconds=1.0,
        ),
    )


@pytest.fixture
def slow() -> Iterator[GatedReceiver]:
    with gated_receiver() as receiver:
        yield receiver


def _submit(api: ApiUser) -> None:
    response = api.client.post(
        "/3.0/batches", json={"operations": [{"method": "GET", "path": "/ping"}]}
    )
    assert response.status_code == 200, response.text


def test_one_accounts_slow_receivers_do_not_delay_another_accounts_webhook(
    batch_api: ApiUser,
    batch_other_api: ApiUser,
    receiver: Receiver,
    slow: GatedReceiver,
    runtime: EmbeddedRuntime,
    services: Services,
) -> None:
    hog, other = batch_api, batch_other_api
    for _ in range(10):
        assert hog.client.post("/3.0/batch-webhooks", json={"url": slow.url}).status_code == 200
    assert other.client.post("/3.0/batch-webhooks", json={"url": receiver.url}).status_code == 200

    _submit(hog)  # ten deliveries to receivers that hold every POST for the whole deadline
    slow.wait_until_holding(CAP)
    # More sending threads are free (4), but the account has its share in flight.
    assert other.client.get("/3.0/ping").status_code == 200
    _submit(other)
    receiver.wait_for_posts(1)
    # The other account's webhook came while the hog's first two were still held: without
    # the cap, its delivery would queue behind the hog's ten for a deadline (10 s) or more.
    assert slow.count("POST") == CAP and slow.held_now == CAP

    slow.gate.set()
    runtime.join()
    assert slow.count("POST") == 10  # each of the hog's deliveries, once
    assert slow.held_most == CAP
    assert _states(services, hog.key) == {DeliveryState.DELIVERED.value: 10}
    assert _states(services, other.key) == {DeliveryState.DELIVERED.value: 1}


def test_the_cap_holds_across_processes(services: Services, settings: Settings) -> None:
    """Two sets of services over one database, as two worker processes have, three sending
    threads each, and a scheduler sweeping: never more than CAP POSTs of the account held."""
    second = open_services(settings, migrate=False)
    try:
        _share_the_deliveries(services, second)
    finally:
        second.close()


def _share_the_deliveries(services: Services, second: Services) -> None:
    processes = [services.webhooks, second.webhooks]
    account = new_account(services)
    outcomes: Counter[DeliveryOutcome] = Counter()
    messages: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    def sending_thread(webhooks: WebhookService) -> None:
        while not stop.is_set():
            try:
                delivery_id = messages.get(timeout=0.05)
            except queue.Empty:
                continue
            report = webhooks.run_delivery(delivery_id)
            outcomes[report.outcome] += 1
            for follow_up in report.follow_ups:
                messages.put(follow_up.target_id)

    def scheduler() -> None:
        while not stop.wait(0.5):
            for follow_up in services.webhooks.sweep(idle_seconds=1.0):
                messages.put(follow_up.target_id)

    with gated_receiver(hold_seconds=0.3) as held:
        add_webhooks(services, account, held.url, count=12)
        for delivery_id in enqueue(services, account):
            messages.put(delivery_id)
        with ThreadPoolExecutor(7) as pool:
            running = [pool.submit(sending_thread, processes[i % 2]) for i in range(6)]
            running.append(pool.submit(scheduler))
            try:
                deadline = time.monotonic() + 60
                while _states(services, account_pk=account)[DeliveryState.DELIVERED] < 12:
                    assert time.monotonic() < deadline, (outcomes, _states(services))
                    time.sleep(0.05)  # polling the outbox: the threads report to nobody
            finally:
                stop.set()
            for future in running:
                future.result()
        assert held.held_most == CAP
        assert held.count("POST") == 12
    assert outcomes[DeliveryOutcome.DELIVERED] == 12
    assert outcomes[DeliveryOutcome.DEFERRED] >= 1  # the cap refused some, uncounted


def _states(services: Services, key: str | None = None, account_pk: int = 0) -> Counter[str]:
    """How many of the account's deliveries are in each state."""
    with services.database.read() as conn:
        if key is not None:
            account = services.accounts.account_for_key(conn, key)
            assert account is not None
            account_pk = account.pk
        return Counter(
            conn.execute(
                select(webhook_deliveries.c.state).where(
                    webhook_deliveries.c.account_pk == account_pk
                )
            ).scalars()
        )


def test_webhook_creates_hold_connection_slots_not_threads(services: Services) -> None:
    """Fourteen creates of one account against a receiver that holds the validating GET: ten
    wait (the account's connection limit), four are refused at once, and another account's
    requests are answered meanwhile."""
    _, hog_key = new_account_key(services)
    _, other_key = new_account_key(services)
    hog, other = httpx2.BasicAuth("x", hog_key), httpx2.BasicAuth("x", other_key)
    with (
        gated_receiver(hold_gets=True) as slow,
        TestClient(create_app(services), base_url="http://testserver") as client,
        ThreadPoolExecutor(14) as pool,
    ):
        creates = [
            pool.submit(client.post, "/3.0/batch-webhooks", json={"url": slow.url}, auth=hog)
            for _ in range(14)
        ]
        slow.wait_until_holding(10)
        try:
            for refused in as_completed(creates, timeout=10):
                assert refused.result().status_code == 429
                if sum(f.done() for f in creates) == 4:
                    break
            # The account is at its limit for everything; another account is not.
            assert client.get("/3.0/ping", auth=hog).status_code == 429
            for _ in range(20):
                assert client.get("/3.0/ping", auth=other).status_code == 200
            assert client.get("/3.0/lists", auth=other).status_code == 200
            assert slow.held_now == 10  # the hog's creates are all still waiting
        finally:
            slow.gate.set()
        statuses = Counter(f.result(30).status_code for f in creates)
    assert statuses == {200: 10, 429: 4}
