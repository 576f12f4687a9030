"""A delivery is POSTed at most `webhook_max_attempts` times, however slow the receiver and
whoever outlives a lease: attempts are counted when claimed, recorded only under the lease
token, and the lease lasts the request's deadline plus a margin."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from conveyor.batches.webhooks import ATTEMPT_HEADER, DELIVERY_ID_HEADER, DeliveryOutcome
from conveyor.composition import Services
from conveyor.domain.clock import OffsetClock
from conveyor.domain.states import DeliveryState
from conveyor.runtime.embedded import EmbeddedRuntime
from conveyor.settings import BatchSettings, Settings
from conveyor.storage.webhooks import LOST_ATTEMPT, HeldDelivery
from tests.webhooks.deliveries import add_webhooks, delivery, enqueue, new_account
from tests.webhooks.gated import GatedReceiver, gated_receiver
from tests.webhooks.hostile import hostile_receiver, read_head

MAX_ATTEMPTS = 3


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret="test-secret",
        batches=BatchSettings(
            webhook_max_attempts=MAX_ATTEMPTS,
            webhook_first_retry_seconds=0.05,
            webhook_timeout_seconds=1.0,
            webhook_lease_margin_seconds=1.0,
            # The sweep re-sends whatever looks lost as often as it can: every chance for a
            # delivery to be sent twice.
            sweep_interval_seconds=0.05,
            sweep_idle_seconds=0.01,
        ),
    )


@pytest.fixture
def gated() -> Iterator[GatedReceiver]:
    with gated_receiver(post_status=500) as receiver:
        yield receiver


def test_the_lease_outlives_the_deadline(services: Services) -> None:
    webhooks = services.webhooks
    assert webhooks.lease_seconds == webhooks.timeout_seconds + 1.0


def test_a_receiver_that_never_answers_gets_max_attempts_posts(
    services: Services, runtime: EmbeddedRuntime
) -> None:
    """Every attempt runs into the deadline while the sweep keeps re-sending the message."""
    posts = []
    lock = threading.Lock()

    def swallow(conn: object, server: object) -> None:
        head = read_head(conn, server)  # type: ignore[arg-type]
        with lock:
            posts.append(head)
        threading.Event().wait(2)  # longer than the deadline: the sender gives up first

    account = new_account(services)
    with hostile_receiver(swallow) as server:
        add_webhooks(services, account, server.url())
        [delivery_id] = enqueue(services, account)
        runtime.dispatcher.send(services.webhooks.sweep(idle_seconds=0))
        _wait_for_state(services, delivery_id, DeliveryState.FAILED)
        runtime.join()
    row = delivery(services, delivery_id)
    assert row.attempts == MAX_ATTEMPTS
    assert len(posts) == MAX_ATTEMPTS, [p.split(b"\r\n")[0] for p in posts]
    history = orjson.loads(row.history)
    assert [entry["error"] for entry in history] == ["No answer within 1 seconds."] * 3


def test_a_sender_past_its_lease_cannot_overwrite_the_one_that_took_over(
    services: Services, clock: OffsetClock, gated: GatedReceiver
) -> None:
    account = new_account(services)
    add_webhooks(services, account, gated.url)
    [delivery_id] = enqueue(services, account)
    webhooks = services.webhooks
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(webhooks.run_delivery, delivery_id)
        gated.wait_until_holding(1)
        # The first sender stalls past its lease (a stopped process, a long GC pause): the
        # delivery looks abandoned, and a second sender takes it over.
        clock.advance(webhooks.lease_seconds + 1)
        second = pool.submit(webhooks.run_delivery, delivery_id)
        gated.wait_until_holding(2)
        # A third finds it held under a live lease.
        assert webhooks.run_delivery(delivery_id).outcome is DeliveryOutcome.NOTHING_TO_DO
        gated.gate.set()
        reports = [first.result(10), second.result(10)]
    assert [r.outcome for r in reports] == [DeliveryOutcome.LEASE_LOST, DeliveryOutcome.RETRYING]
    row = delivery(services, delivery_id)
    assert (row.state, row.attempts, row.lease_token) == ("queued", 2, None)
    history = orjson.loads(row.history)
    assert [(e["status_code"], e["error"]) for e in history] == [(None, LOST_ATTEMPT), (500, None)]
    posts = gated.posts()
    assert {p.headers[DELIVERY_ID_HEADER] for p in posts} == {delivery_id}
    assert [p.headers[ATTEMPT_HEADER] for p in posts] == ["1", "2"]

    # The last attempt; afterwards nothing more is sent, however often it is asked for.
    clock.advance(60)
    assert webhooks.run_delivery(delivery_id).outcome is DeliveryOutcome.FAILED
    for _ in range(3):
        clock.advance(webhooks.lease_seconds + 60)
        assert webhooks.run_delivery(delivery_id).outcome is DeliveryOutcome.NOTHING_TO_DO
    assert len(gated.posts()) == MAX_ATTEMPTS
    assert delivery(services, delivery_id).attempts == MAX_ATTEMPTS


def test_a_sender_that_dies_during_the_last_attempt_ends_the_delivery(
    services: Services, clock: OffsetClock
) -> None:
    """Claimed for its last attempt, never recorded: once the lease runs out the delivery is
    failed, not sent a fourth time."""
    account = new_account(services)
    add_webhooks(services, account, "http://127.0.0.1:9/never")
    [delivery_id] = enqueue(services, account)
    store, webhooks = services.webhook_store, services.webhooks
    for _ in range(MAX_ATTEMPTS):
        with services.database.write() as conn:
            held = store.claim(
                conn,
                delivery(services, delivery_id),
                lease_seconds=webhooks.lease_seconds,
                max_attempts=MAX_ATTEMPTS,
            )
        assert held is not None  # and the sender dies here, every time
        clock.advance(webhooks.lease_seconds + 1)
    with services.database.write() as conn:
        assert (
            store.claim(
                conn,
                delivery(services, delivery_id),
                lease_seconds=webhooks.lease_seconds,
                max_attempts=MAX_ATTEMPTS,
            )
            is None
        )
    assert webhooks.run_delivery(delivery_id).outcome is DeliveryOutcome.FAILED
    row = delivery(services, delivery_id)
    assert (row.state, row.attempts, row.last_error) == ("failed", MAX_ATTEMPTS, LOST_ATTEMPT)
    assert len(orjson.loads(row.history)) == MAX_ATTEMPTS


def test_recording_under_a_stale_token_changes_nothing(services: Services) -> None:
    account = new_account(services)
    add_webhooks(services, account, "http://127.0.0.1:9/never")
    [delivery_id] = enqueue(services, account)
    store = services.webhook_store
    with services.database.write() as conn:
        held = store.claim(
            conn, delivery(services, delivery_id), lease_seconds=30, max_attempts=MAX_ATTEMPTS
        )
    assert held is not None
    before = delivery(services, delivery_id)
    stale = HeldDelivery(held.delivery, token="0" * 32)
    with services.database.write() as conn:
        assert not store.record_attempt(
            conn,
            stale,
            state=DeliveryState.DELIVERED,
            status_code=200,
            error=None,
            duration_ms=1.0,
            next_attempt_ts=0.0,
        )
    assert delivery(services, delivery_id) == before


# --- every interleaving of senders, crashes and the clock -----------------------------------

# (what, sender, ok): "take" reads the row and claims it (or gives up on it) as
# `run_delivery` does; "finish" records the sender's attempt, if it holds one, as answered
# 2xx or not; "expire" lets time pass beyond any lease.
Step = tuple[str, int, bool]
STEPS = st.tuples(st.sampled_from(["take", "finish", "expire"]), st.integers(0, 2), st.booleans())


@given(steps=st.lists(STEPS, max_size=30))
@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_attempts_never_pass_the_maximum_whatever_the_interleaving(
    services: Services, clock: OffsetClock, steps: list[Step]
) -> None:
    store, webhooks = services.webhook_store, services.webhooks
    account = new_account(services)
    add_webhooks(services, account, "http://127.0.0.1:9/never")
    [delivery_id] = enqueue(services, account)
    held: dict[int, HeldDelivery] = {}
    sent = 0  # the POSTs a receiver would have had: one per successful claim
    for what, sender, ok in steps:
        if what == "take":
            with services.database.write() as conn:
                row = delivery(services, delivery_id)
                if not store.give_up(conn, row, MAX_ATTEMPTS):
                    taken = store.claim(
                        conn, row, lease_seconds=webhooks.lease_seconds, max_attempts=MAX_ATTEMPTS
                    )
                    if taken is not None:
                        held[sender] = taken
                        sent += 1
        elif what == "finish" and sender in held:
            mine = held.pop(sender)
            last = mine.delivery.attempts >= MAX_ATTEMPTS
            state = (
                DeliveryState.DELIVERED
                if ok
                else DeliveryState.FAILED
                if last
                else DeliveryState.QUEUED
            )
            with services.database.write() as conn:
                store.record_attempt(
                    conn,
                    mine,
                    state=state,
                    status_code=200 if ok else 500,
                    error=None,
                    duration_ms=1.0,
                    next_attempt_ts=clock.now(),
                )
        elif what == "expire":
            clock.advance(webhooks.lease_seconds + 1)
        row = delivery(services, delivery_id)
        assert row.attempts == sent <= MAX_ATTEMPTS
        assert len(orjson.loads(row.history)) <= row.attempts
        live = [h for h in held.values() if h.token == row.lease_token]
        assert len(live) == (1 if row.lease_token else 0)


def _wait_for_state(services: Services, delivery_id: str, state: DeliveryState) -> None:
    deadline = time.monotonic() + 30
    while delivery(services, delivery_id).state != state:
        assert time.monotonic() < deadline, delivery(services, delivery_id)
        time.sleep(0.05)  # polling the delivery row: nothing signals its change
