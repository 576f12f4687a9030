"""Idempotency keys of batch submissions: one row per (account, key) for 24 hours.

The row is written by the transaction that publishes the batch (`claim`), so a key names
only whole batches; the primary key decides between two submits racing under one key (the
database waits for the first to commit or roll back, then the second finds its row).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, and_, delete, exists, func, not_, select
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.domain.clock import Clock
from conveyor.domain.idempotency import TTL_SECONDS
from conveyor.domain.states import HIDDEN_BATCH_STATES
from conveyor.storage.tables import batches, idempotency_keys

_HIDDEN = sorted(HIDDEN_BATCH_STATES)


@dataclass(frozen=True, slots=True)
class StoredKey:
    body_sha256: str
    batch_id: str


class IdempotencyStore:
    def __init__(self, clock: Clock, ttl_seconds: float = TTL_SECONDS) -> None:
        self.clock = clock
        self.ttl_seconds = ttl_seconds

    def _live(self, account_pk: int, key: str) -> ColumnElement[bool]:
        """The key's row, if it has not expired and its batch still exists for clients."""
        return and_(
            idempotency_keys.c.account_pk == account_pk,
            idempotency_keys.c.key == key,
            idempotency_keys.c.created_ts >= self.clock.now() - self.ttl_seconds,
            exists().where(
                and_(
                    batches.c.id == idempotency_keys.c.batch_id,
                    batches.c.status.not_in(_HIDDEN),
                )
            ),
        )

    def find(self, conn: Connection, account_pk: int, key: str) -> StoredKey | None:
        row = conn.execute(
            select(idempotency_keys.c.body_sha256, idempotency_keys.c.batch_id).where(
                self._live(account_pk, key)
            )
        ).first()
        return None if row is None else StoredKey(row.body_sha256, row.batch_id)

    def claim(
        self, conn: Connection, account_pk: int, key: str, body_sha256: str, batch_id: str
    ) -> StoredKey | None:
        """Record `key` for `batch_id`, in the caller's publishing transaction; None when it
        is ours, else the live row another request holds (its batch is the answer)."""
        mine = and_(idempotency_keys.c.account_pk == account_pk, idempotency_keys.c.key == key)
        # An expired row, or one whose batch was deleted, no longer holds the key.
        conn.execute(delete(idempotency_keys).where(and_(mine, not_(self._live(account_pk, key)))))
        values = {
            "account_pk": account_pk,
            "key": key,
            "body_sha256": body_sha256,
            "batch_id": batch_id,
            "created_ts": self.clock.now(),
        }
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        # RETURNING, not the row count: SQLAlchemy reports -1 for this insert on psycopg.
        inserted = conn.execute(
            dialect.insert(idempotency_keys)
            .values(values)
            .on_conflict_do_nothing()
            .returning(idempotency_keys.c.key)
        ).first()
        if inserted is not None:
            return None
        holder = self.find(conn, account_pk, key)
        if holder is None:  # cannot happen: the conflict was with a live row
            raise RuntimeError(f"idempotency key of account {account_pk} held by nothing")
        return holder

    def forget_batch(self, conn: Connection, batch_id: str) -> None:
        """With the batch's removal: a key must not outlive what it names."""
        conn.execute(delete(idempotency_keys).where(idempotency_keys.c.batch_id == batch_id))

    def purge_expired(self, conn: Connection, limit: int = 5_000) -> int:
        """Drop up to about `limit` keys older than the TTL, oldest first; returns how many."""
        cutoff = self.clock.now() - self.ttl_seconds
        oldest = (
            select(idempotency_keys.c.created_ts)
            .where(idempotency_keys.c.created_ts < cutoff)
            .order_by(idempotency_keys.c.created_ts)
            .limit(limit)
            .subquery()
        )
        upper = conn.execute(select(func.max(oldest.c.created_ts))).scalar()
        if upper is None:
            return 0
        result = conn.execute(
            delete(idempotency_keys).where(idempotency_keys.c.created_ts <= upper)
        )
        return int(result.rowcount)
