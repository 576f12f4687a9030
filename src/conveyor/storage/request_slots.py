"""Connection slots in a table: the per-account request limit shared by API processes that
have a database but no Redis. A slot has an expiry, so a SIGKILLed holder cannot leak it
for longer than its lease (docs/architecture.md decision 9)."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, insert, select

from conveyor.domain.clock import Clock
from conveyor.storage.database import Database
from conveyor.storage.tables import request_slots


class RequestSlotStore:
    def __init__(self, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock

    def acquire(self, account_pk: int, limit: int, lease_seconds: float) -> str | None:
        """A slot's token if fewer than `limit` unexpired slots of the account are held."""
        token = uuid.uuid4().hex
        now = self.clock.now()
        with self.database.write() as conn:
            if conn.dialect.name == "postgresql":
                # Serialize count-then-insert per account across processes.
                conn.execute(select(func.pg_advisory_xact_lock(7290012, account_pk)))
            mine = request_slots.c.account_pk == account_pk
            conn.execute(delete(request_slots).where(mine, request_slots.c.expires_ts < now))
            held = conn.execute(
                select(func.count()).select_from(request_slots).where(mine)
            ).scalar_one()
            if held >= limit:
                return None
            conn.execute(
                insert(request_slots).values(
                    token=token, account_pk=account_pk, expires_ts=now + lease_seconds
                )
            )
        return token

    def release(self, token: str) -> None:
        with self.database.write() as conn:
            conn.execute(delete(request_slots).where(request_slots.c.token == token))
