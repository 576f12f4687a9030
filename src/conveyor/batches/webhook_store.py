"""SQL for batch webhooks and their delivery outbox."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from conveyor.domain.ids import hex_id
from conveyor.domain.webhook_payload import CompletedBatch
from conveyor.storage.tables import batch_webhooks, webhook_deliveries

QUEUED, DELIVERING, DELIVERED, FAILED, CANCELLED = (
    "queued",
    "delivering",
    "delivered",
    "failed",
    "cancelled",
)
PENDING_STATES = (QUEUED, DELIVERING)


@dataclass(frozen=True, slots=True)
class WebhookRow:
    id: str
    account_pk: int
    url: str
    enabled: bool
    secret: str


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: str
    webhook_id: str
    account_pk: int
    batch_id: str
    payload: str
    state: str
    attempts: int
    next_attempt_ts: float
    last_status_code: int | None
    last_error: str | None
    history: str
    created_ts: float
    delivered_ts: float | None


_WEBHOOK_COLUMNS = (
    batch_webhooks.c.id,
    batch_webhooks.c.account_pk,
    batch_webhooks.c.url,
    batch_webhooks.c.enabled,
    batch_webhooks.c.secret,
)
_DELIVERY_COLUMNS = (
    webhook_deliveries.c.id,
    webhook_deliveries.c.webhook_id,
    webhook_deliveries.c.account_pk,
    webhook_deliveries.c.batch_id,
    webhook_deliveries.c.payload,
    webhook_deliveries.c.state,
    webhook_deliveries.c.attempts,
    webhook_deliveries.c.next_attempt_ts,
    webhook_deliveries.c.last_status_code,
    webhook_deliveries.c.last_error,
    webhook_deliveries.c.history,
    webhook_deliveries.c.created_ts,
    webhook_deliveries.c.delivered_ts,
)


def _webhook(row: Any) -> WebhookRow:
    return WebhookRow(**row._mapping)


def _delivery(row: Any) -> DeliveryRow:
    return DeliveryRow(**row._mapping)


# --- webhooks ------------------------------------------------------------------------------


def count_webhooks(conn: Connection, account_pk: int) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(batch_webhooks)
            .where(batch_webhooks.c.account_pk == account_pk)
        ).scalar_one()
    )


def create_webhook(conn: Connection, account_pk: int, url: str, enabled: bool) -> WebhookRow:
    row = WebhookRow(hex_id(10), account_pk, url, enabled, secrets.token_hex(32))
    conn.execute(
        insert(batch_webhooks).values(
            id=row.id,
            account_pk=account_pk,
            url=url,
            enabled=enabled,
            secret=row.secret,
            created_ts=time.time(),
        )
    )
    return row


def get_webhook(conn: Connection, account_pk: int, webhook_id: str) -> WebhookRow | None:
    row = conn.execute(
        select(*_WEBHOOK_COLUMNS).where(
            and_(batch_webhooks.c.id == webhook_id, batch_webhooks.c.account_pk == account_pk)
        )
    ).first()
    return None if row is None else _webhook(row)


def list_webhooks(
    conn: Connection, account_pk: int, count: int, offset: int
) -> tuple[list[WebhookRow], int]:
    rows = conn.execute(
        select(*_WEBHOOK_COLUMNS)
        .where(batch_webhooks.c.account_pk == account_pk)
        .order_by(batch_webhooks.c.created_ts, batch_webhooks.c.id)
        .limit(count)
        .offset(offset)
    ).all()
    return [_webhook(row) for row in rows], count_webhooks(conn, account_pk)


def update_webhook(conn: Connection, webhook_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(batch_webhooks).where(batch_webhooks.c.id == webhook_id).values(**values))


def delete_webhook(conn: Connection, webhook_id: str) -> None:
    conn.execute(
        update(webhook_deliveries)
        .where(
            and_(
                webhook_deliveries.c.webhook_id == webhook_id,
                webhook_deliveries.c.state.in_(PENDING_STATES),
            )
        )
        .values(state=CANCELLED, updated_ts=time.time())
    )
    conn.execute(delete(batch_webhooks).where(batch_webhooks.c.id == webhook_id))


# --- the outbox ----------------------------------------------------------------------------


def enqueue_completed(conn: Connection, account_pk: int, batch: CompletedBatch) -> list[str]:
    """One delivery per enabled webhook of the account, in the caller's transaction."""
    hooks = conn.execute(
        select(batch_webhooks.c.id).where(
            and_(batch_webhooks.c.account_pk == account_pk, batch_webhooks.c.enabled.is_(True))
        )
    ).scalars()
    now = time.time()
    payload = orjson.dumps(batch.to_json()).decode()
    ids: list[str] = []
    rows = []
    for webhook_id in hooks:
        delivery_id = hex_id(16)
        ids.append(delivery_id)
        rows.append(
            {
                "id": delivery_id,
                "webhook_id": webhook_id,
                "account_pk": account_pk,
                "batch_id": batch.id,
                "payload": payload,
                "state": QUEUED,
                "attempts": 0,
                "next_attempt_ts": now,
                "lease_until": 0.0,
                "history": "[]",
                "created_ts": now,
                "updated_ts": now,
            }
        )
    if rows:
        conn.execute(insert(webhook_deliveries), rows)
    return ids


def count_pending(conn: Connection, account_pk: int) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(webhook_deliveries)
            .where(
                and_(
                    webhook_deliveries.c.account_pk == account_pk,
                    webhook_deliveries.c.state.in_(PENDING_STATES),
                )
            )
        ).scalar_one()
    )


def claim_delivery(conn: Connection, delivery_id: str, lease_seconds: float) -> bool:
    """Take a due delivery (or one whose sender died) so that only one process sends it."""
    now = time.time()
    result = conn.execute(
        update(webhook_deliveries)
        .where(
            and_(
                webhook_deliveries.c.id == delivery_id,
                or_(
                    and_(
                        webhook_deliveries.c.state == QUEUED,
                        # A little early is fine: the broker's delay and our clock may differ.
                        webhook_deliveries.c.next_attempt_ts <= now + 1.0,
                    ),
                    and_(
                        webhook_deliveries.c.state == DELIVERING,
                        webhook_deliveries.c.lease_until < now,
                    ),
                ),
            )
        )
        .values(state=DELIVERING, lease_until=now + lease_seconds, updated_ts=now)
    )
    return result.rowcount == 1


def get_delivery(conn: Connection, delivery_id: str) -> DeliveryRow | None:
    row = conn.execute(
        select(*_DELIVERY_COLUMNS).where(webhook_deliveries.c.id == delivery_id)
    ).first()
    return None if row is None else _delivery(row)


def webhook_for_delivery(conn: Connection, webhook_id: str) -> WebhookRow | None:
    row = conn.execute(select(*_WEBHOOK_COLUMNS).where(batch_webhooks.c.id == webhook_id)).first()
    return None if row is None else _webhook(row)


def record_attempt(
    conn: Connection,
    delivery: DeliveryRow,
    *,
    state: str,
    status_code: int | None,
    error: str | None,
    duration_ms: float,
    next_attempt_ts: float,
) -> None:
    now = time.time()
    history = orjson.loads(delivery.history)
    history.append(
        {"at": now, "status_code": status_code, "error": error, "duration_ms": duration_ms}
    )
    conn.execute(
        update(webhook_deliveries)
        .where(
            and_(webhook_deliveries.c.id == delivery.id, webhook_deliveries.c.state == DELIVERING)
        )
        .values(
            state=state,
            attempts=delivery.attempts + 1,
            last_status_code=status_code,
            last_error=error,
            history=orjson.dumps(history).decode(),
            next_attempt_ts=next_attempt_ts,
            lease_until=0.0,
            updated_ts=now,
            delivered_ts=now if state == DELIVERED else None,
        )
    )


def cancel(conn: Connection, delivery_id: str) -> None:
    conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.id == delivery_id)
        .values(state=CANCELLED, lease_until=0.0, updated_ts=time.time())
    )


def list_deliveries(
    conn: Connection, webhook_id: str, count: int, offset: int
) -> tuple[list[DeliveryRow], int]:
    condition = webhook_deliveries.c.webhook_id == webhook_id
    total = conn.execute(
        select(func.count()).select_from(webhook_deliveries).where(condition)
    ).scalar_one()
    rows = conn.execute(
        select(*_DELIVERY_COLUMNS)
        .where(condition)
        .order_by(webhook_deliveries.c.created_ts.desc(), webhook_deliveries.c.id)
        .limit(count)
        .offset(offset)
    ).all()
    return [_delivery(row) for row in rows], int(total)


def requeue(conn: Connection, delivery_id: str) -> bool:
    """Send again from scratch (a manual redelivery): a fresh round of attempts."""
    now = time.time()
    result = conn.execute(
        update(webhook_deliveries)
        .where(
            and_(
                webhook_deliveries.c.id == delivery_id,
                webhook_deliveries.c.state != DELIVERING,
            )
        )
        .values(state=QUEUED, attempts=0, next_attempt_ts=now, lease_until=0.0, updated_ts=now)
    )
    return result.rowcount == 1


def overdue_deliveries(conn: Connection, due_before: float, limit: int = 500) -> list[str]:
    """Deliveries whose message may have been lost: due for a while, or a dead sender's."""
    now = time.time()
    return list(
        conn.execute(
            select(webhook_deliveries.c.id)
            .where(
                or_(
                    and_(
                        webhook_deliveries.c.state == QUEUED,
                        webhook_deliveries.c.next_attempt_ts <= due_before,
                    ),
                    and_(
                        webhook_deliveries.c.state == DELIVERING,
                        webhook_deliveries.c.lease_until < now,
                    ),
                )
            )
            .limit(limit)
        ).scalars()
    )


def purge_deliveries_before(conn: Connection, created_before: float) -> int:
    result = conn.execute(
        delete(webhook_deliveries).where(
            and_(
                webhook_deliveries.c.created_ts < created_before,
                webhook_deliveries.c.state.not_in(PENDING_STATES),
            )
        )
    )
    return int(result.rowcount)
