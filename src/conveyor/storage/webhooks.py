"""Batch webhook SQL: the webhooks of an account and the delivery outbox.

Delivery moves are compare-and-sets checked against the domain's `DELIVERY_MOVES`; the time
comes from the store's clock, so retries, leases and retention follow virtual time too.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, replace
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from conveyor.domain.clock import Clock
from conveyor.domain.ids import hex_id
from conveyor.domain.states import (
    DELIVERY_MOVES,
    PENDING_DELIVERY_STATES,
    DeliveryState,
    check_move,
    sources,
)
from conveyor.domain.webhook_payload import CompletedBatch
from conveyor.storage.raw_sql import RawStatement, literal_list
from conveyor.storage.tables import batch_webhooks, webhook_deliveries

_PENDING = sorted(PENDING_DELIVERY_STATES)
# Read by every submit and every finished batch: on the cursor (storage/raw_sql.py).
_PENDING_DELIVERIES = RawStatement(
    select(func.count())
    .select_from(webhook_deliveries)
    .where(
        and_(
            webhook_deliveries.c.account_pk == bindparam("account_pk"),
            webhook_deliveries.c.state.in_(literal_list(_PENDING)),
        )
    )
)
_ENABLED_WEBHOOKS = RawStatement(
    select(batch_webhooks.c.id).where(
        and_(
            batch_webhooks.c.account_pk == bindparam("account_pk"),
            batch_webhooks.c.enabled.is_(True),
        )
    )
)


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
    lease_token: str | None = None
    lease_until: float = 0.0

    @property
    def is_pending(self) -> bool:
        return DeliveryState(self.state).is_pending


@dataclass(frozen=True, slots=True)
class HeldDelivery:
    """A delivery claimed for one attempt, already counted in `delivery.attempts`; only the
    holder of `token` may record how the attempt went."""

    delivery: DeliveryRow
    token: str


# What the history says of an attempt whose sender never recorded an outcome.
LOST_ATTEMPT = (
    "The attempt did not finish: its sender stopped or outlived its lease. "
    "The receiver may have received it."
)
# Serializes the in-flight count and the claim of one account's deliveries on PostgreSQL
# (the request slots use 7290012).
_ACCOUNT_LOCK_CLASS = 7290013


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
    webhook_deliveries.c.lease_token,
    webhook_deliveries.c.lease_until,
)


def _webhook(row: Any) -> WebhookRow:
    return WebhookRow(**row._mapping)


def _delivery(row: Any) -> DeliveryRow:
    return DeliveryRow(**row._mapping)


class WebhookStore:
    """All SQL of batch webhooks and their deliveries, with time from `clock`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    # --- webhooks ----------------------------------------------------------------------

    def count(self, conn: Connection, account_pk: int) -> int:
        return int(
            conn.execute(
                select(func.count())
                .select_from(batch_webhooks)
                .where(batch_webhooks.c.account_pk == account_pk)
            ).scalar_one()
        )

    def create(self, conn: Connection, account_pk: int, url: str, enabled: bool) -> WebhookRow:
        row = WebhookRow(hex_id(10), account_pk, url, enabled, secrets.token_hex(32))
        conn.execute(
            insert(batch_webhooks).values(
                id=row.id,
                account_pk=account_pk,
                url=url,
                enabled=enabled,
                secret=row.secret,
                created_ts=self.clock.now(),
            )
        )
        return row

    def get(self, conn: Connection, account_pk: int, webhook_id: str) -> WebhookRow | None:
        row = conn.execute(
            select(*_WEBHOOK_COLUMNS).where(
                and_(batch_webhooks.c.id == webhook_id, batch_webhooks.c.account_pk == account_pk)
            )
        ).first()
        return None if row is None else _webhook(row)

    def list_for_account(
        self, conn: Connection, account_pk: int, count: int, offset: int
    ) -> tuple[list[WebhookRow], int]:
        rows = conn.execute(
            select(*_WEBHOOK_COLUMNS)
            .where(batch_webhooks.c.account_pk == account_pk)
            .order_by(batch_webhooks.c.created_ts, batch_webhooks.c.id)
            .limit(count)
            .offset(offset)
        ).all()
        return [_webhook(row) for row in rows], self.count(conn, account_pk)

    def update(self, conn: Connection, webhook_id: str, values: dict[str, Any]) -> None:
        conn.execute(
            update(batch_webhooks).where(batch_webhooks.c.id == webhook_id).values(**values)
        )

    def delete(self, conn: Connection, webhook_id: str) -> None:
        """Remove the webhook; its deliveries still waiting are cancelled, not sent."""
        conn.execute(
            update(webhook_deliveries)
            .where(
                and_(
                    webhook_deliveries.c.webhook_id == webhook_id,
                    webhook_deliveries.c.state.in_(
                        sorted(sources(DELIVERY_MOVES, DeliveryState.CANCELLED))
                    ),
                )
            )
            .values(state=DeliveryState.CANCELLED.value, updated_ts=self.clock.now())
        )
        conn.execute(delete(batch_webhooks).where(batch_webhooks.c.id == webhook_id))

    def for_delivery(self, conn: Connection, webhook_id: str) -> WebhookRow | None:
        row = conn.execute(
            select(*_WEBHOOK_COLUMNS).where(batch_webhooks.c.id == webhook_id)
        ).first()
        return None if row is None else _webhook(row)

    # --- the outbox --------------------------------------------------------------------

    def enqueue_completed(
        self, conn: Connection, account_pk: int, batch: CompletedBatch
    ) -> list[str]:
        """One delivery per enabled webhook of the account, in the caller's transaction."""
        hooks = [row[0] for row in _ENABLED_WEBHOOKS.all(conn, {"account_pk": account_pk})]
        if not hooks:
            return []
        now = self.clock.now()
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
                    "state": DeliveryState.QUEUED.value,
                    "attempts": 0,
                    "next_attempt_ts": now,
                    "lease_until": 0.0,
                    "lease_token": None,
                    "history": "[]",
                    "created_ts": now,
                    "updated_ts": now,
                }
            )
        if rows:
            conn.execute(insert(webhook_deliveries), rows)
        return ids

    def count_pending(self, conn: Connection, account_pk: int) -> int:
        return int(_PENDING_DELIVERIES.scalar(conn, {"account_pk": account_pk}))

    def get_delivery(self, conn: Connection, delivery_id: str) -> DeliveryRow | None:
        row = conn.execute(
            select(*_DELIVERY_COLUMNS).where(webhook_deliveries.c.id == delivery_id)
        ).first()
        return None if row is None else _delivery(row)

    # --- one attempt: claimed under a lease, recorded under its token -------------------

    def lock_account(self, conn: Connection, account_pk: int) -> None:
        """Hold the account's delivery claims until the transaction ends, so that counting
        its deliveries in flight and claiming one more are one step across processes.
        (SQLite needs nothing: its writers already run one at a time.)"""
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_ACCOUNT_LOCK_CLASS, account_pk)))

    def in_flight(self, conn: Connection, account_pk: int) -> int:
        """The account's deliveries held under a live lease: attempts under way."""
        return int(
            conn.execute(
                select(func.count())
                .select_from(webhook_deliveries)
                .where(
                    webhook_deliveries.c.account_pk == account_pk,
                    webhook_deliveries.c.state == DeliveryState.DELIVERING.value,
                    webhook_deliveries.c.lease_until >= self.clock.now(),
                )
            ).scalar_one()
        )

    def is_due(self, delivery: DeliveryRow) -> bool:
        """Whether a sender may take `delivery` now: queued and due, or its sender's lease ran
        out (a crash, or a process that stalled past it)."""
        now = self.clock.now()
        if delivery.state == DeliveryState.QUEUED:
            # A little early is fine: the broker's delay and our clock differ.
            return delivery.next_attempt_ts <= now + 1.0
        return delivery.state == DeliveryState.DELIVERING and delivery.lease_until < now

    def claim(
        self,
        conn: Connection,
        delivery: DeliveryRow,
        *,
        lease_seconds: float,
        max_attempts: int,
    ) -> HeldDelivery | None:
        """Take `delivery`, as read in this transaction, for one attempt, counted now.

        A compare-and-set on what was read: None if anything changed meanwhile, if it is not
        due, or if its attempts are spent. Counting at the claim is what keeps `attempts`
        (and the POSTs a receiver gets) at most `max_attempts`, even when a sender dies
        after sending and before recording.
        """
        if not self.is_due(delivery) or delivery.attempts >= max_attempts:
            return None
        check_move(DELIVERY_MOVES, DeliveryState(delivery.state), DeliveryState.DELIVERING)
        now = self.clock.now()
        history = delivery.history
        if delivery.state == DeliveryState.DELIVERING:
            history = _with_lost_attempt(history, now)
        token = uuid.uuid4().hex
        values: dict[str, Any] = {
            "state": DeliveryState.DELIVERING.value,
            "attempts": delivery.attempts + 1,
            "lease_token": token,
            "lease_until": now + lease_seconds,
            "history": history,
            "updated_ts": now,
        }
        result = conn.execute(
            update(webhook_deliveries)
            .where(
                *_unchanged(delivery),
                webhook_deliveries.c.attempts < max_attempts,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            return None
        del values["updated_ts"]
        return HeldDelivery(replace(delivery, **values), token)

    def give_up(self, conn: Connection, delivery: DeliveryRow, max_attempts: int) -> bool:
        """End a delivery that is due but has no attempt left: its last sender died before
        recording (or the maximum was lowered since). False if it is not such a delivery."""
        if not self.is_due(delivery) or delivery.attempts < max_attempts:
            return False
        now = self.clock.now()
        lost = delivery.state == DeliveryState.DELIVERING
        result = conn.execute(
            update(webhook_deliveries)
            .where(*_unchanged(delivery))
            .values(
                state=DeliveryState.FAILED.value,
                lease_token=None,
                lease_until=0.0,
                last_status_code=None if lost else delivery.last_status_code,
                last_error=LOST_ATTEMPT if lost else delivery.last_error,
                history=_with_lost_attempt(delivery.history, now) if lost else delivery.history,
                updated_ts=now,
            )
        )
        return result.rowcount == 1

    def record_attempt(
        self,
        conn: Connection,
        held: HeldDelivery,
        *,
        state: DeliveryState,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
        next_attempt_ts: float,
    ) -> bool:
        """Record the held attempt's outcome; False (nothing written) if the lease was lost,
        to a sender that took the delivery over after it ran out."""
        check_move(DELIVERY_MOVES, DeliveryState.DELIVERING, state)
        now = self.clock.now()
        history = orjson.loads(held.delivery.history)
        history.append(
            {"at": now, "status_code": status_code, "error": error, "duration_ms": duration_ms}
        )
        result = conn.execute(
            update(webhook_deliveries)
            .where(
                webhook_deliveries.c.id == held.delivery.id,
                webhook_deliveries.c.state == DeliveryState.DELIVERING.value,
                webhook_deliveries.c.lease_token == held.token,
            )
            .values(
                state=state.value,
                last_status_code=status_code,
                last_error=error,
                history=orjson.dumps(history).decode(),
                next_attempt_ts=next_attempt_ts,
                lease_until=0.0,
                lease_token=None,
                updated_ts=now,
                delivered_ts=now if state is DeliveryState.DELIVERED else None,
            )
        )
        return result.rowcount == 1

    def waiting(self, conn: Connection, account_pk: int, limit: int) -> list[str]:
        """The account's due deliveries that no sender holds, oldest first: the ones a
        sender hands on to when it frees one of the account's places."""
        if limit <= 0:
            return []
        return list(
            conn.execute(
                select(webhook_deliveries.c.id)
                .where(
                    webhook_deliveries.c.account_pk == account_pk,
                    webhook_deliveries.c.state == DeliveryState.QUEUED.value,
                    webhook_deliveries.c.next_attempt_ts <= self.clock.now(),
                )
                .order_by(webhook_deliveries.c.next_attempt_ts, webhook_deliveries.c.id)
                .limit(limit)
            ).scalars()
        )

    def cancel(self, conn: Connection, delivery_id: str) -> None:
        conn.execute(
            update(webhook_deliveries)
            .where(
                and_(
                    webhook_deliveries.c.id == delivery_id,
                    webhook_deliveries.c.state.in_(
                        sorted(sources(DELIVERY_MOVES, DeliveryState.CANCELLED))
                    ),
                )
            )
            .values(
                state=DeliveryState.CANCELLED.value,
                lease_until=0.0,
                lease_token=None,
                updated_ts=self.clock.now(),
            )
        )

    def list_deliveries(
        self, conn: Connection, webhook_id: str, count: int, offset: int
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

    def requeue(self, conn: Connection, delivery_id: str) -> bool:
        """Send again from scratch (a manual redelivery): a fresh round of attempts."""
        now = self.clock.now()
        result = conn.execute(
            update(webhook_deliveries)
            .where(
                and_(
                    webhook_deliveries.c.id == delivery_id,
                    # Not while a sender holds it: its attempt would overwrite the fresh round.
                    webhook_deliveries.c.state.in_(
                        sorted(
                            sources(DELIVERY_MOVES, DeliveryState.QUEUED)
                            - {DeliveryState.DELIVERING}
                        )
                    ),
                )
            )
            .values(
                state=DeliveryState.QUEUED.value,
                attempts=0,
                next_attempt_ts=now,
                lease_until=0.0,
                lease_token=None,
                updated_ts=now,
            )
        )
        return result.rowcount == 1

    def overdue(
        self, conn: Connection, idle_seconds: float, per_account: int, limit: int = 500
    ) -> list[str]:
        """Deliveries whose message may have been lost: due for a while, or a dead sender's.

        At most `per_account` of each account, oldest first: more could not run at once
        anyway, and one account's thousand waiting deliveries must not crowd out the rest.
        """
        now = self.clock.now()
        deliveries = webhook_deliveries.c
        rank = (
            func.row_number()
            .over(
                partition_by=deliveries.account_pk,
                order_by=(deliveries.next_attempt_ts, deliveries.id),
            )
            .label("rank")
        )
        candidates = (
            select(deliveries.id, rank)
            .where(
                or_(
                    and_(
                        deliveries.state == DeliveryState.QUEUED.value,
                        deliveries.next_attempt_ts <= now - idle_seconds,
                    ),
                    and_(
                        deliveries.state == DeliveryState.DELIVERING.value,
                        deliveries.lease_until < now,
                    ),
                )
            )
            .subquery()
        )
        return list(
            conn.execute(
                select(candidates.c.id).where(candidates.c.rank <= per_account).limit(limit)
            ).scalars()
        )

    def purge_ended(self, conn: Connection, retention_seconds: float) -> int:
        """Drop ended deliveries older than the retention period (their batch is gone too)."""
        cutoff = self.clock.now() - retention_seconds
        result = conn.execute(
            delete(webhook_deliveries).where(
                and_(
                    webhook_deliveries.c.created_ts < cutoff,
                    webhook_deliveries.c.state.not_in(_PENDING),
                )
            )
        )
        return int(result.rowcount)


def _unchanged(delivery: DeliveryRow) -> list[Any]:
    """Conditions that hold while the row is as `delivery` read it (a compare-and-set)."""
    deliveries = webhook_deliveries.c
    return [
        deliveries.id == delivery.id,
        deliveries.state == delivery.state,
        deliveries.attempts == delivery.attempts,
        deliveries.lease_token.is_not_distinct_from(delivery.lease_token),
    ]


def _with_lost_attempt(history: str, now: float) -> str:
    entries = orjson.loads(history)
    entries.append({"at": now, "status_code": None, "error": LOST_ATTEMPT, "duration_ms": None})
    return orjson.dumps(entries).decode()
