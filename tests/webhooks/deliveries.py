"""Webhooks and deliveries written straight into the outbox, for tests of the sending."""

from __future__ import annotations

from conveyor.composition import Services
from conveyor.domain.ids import hex_id
from conveyor.domain.webhook_payload import CompletedBatch
from conveyor.storage.webhooks import DeliveryRow
from tests.conftest import new_account_key


def new_account(services: Services) -> int:
    """A fresh account's primary key."""
    _, key = new_account_key(services)
    with services.database.read() as conn:
        account = services.accounts.account_for_key(conn, key)
    assert account is not None
    return account.pk


def completed_batch() -> CompletedBatch:
    batch_id = hex_id(10)
    return CompletedBatch(
        id=batch_id,
        status="finished",
        total_operations=1,
        finished_operations=1,
        errored_operations=0,
        submitted_at="2026-11-28T10:00:00+00:00",
        completed_at="2026-11-28T10:00:01+00:00",
        links=[
            {"rel": "self", "href": f"http://testserver/3.0/batches/{batch_id}", "method": "GET"}
        ],
    )


def add_webhooks(services: Services, account_pk: int, url: str, count: int = 1) -> None:
    """Webhooks stored as if their URL had passed the check on create."""
    with services.database.write() as conn:
        for _ in range(count):
            services.webhook_store.create(conn, account_pk, url, enabled=True)


def enqueue(services: Services, account_pk: int) -> list[str]:
    """One delivery per enabled webhook of the account, as a finishing batch writes them."""
    with services.database.write() as conn:
        return services.webhook_store.enqueue_completed(conn, account_pk, completed_batch())


def delivery(services: Services, delivery_id: str) -> DeliveryRow:
    with services.database.read() as conn:
        found = services.webhook_store.get_delivery(conn, delivery_id)
    assert found is not None
    return found
