"""Removing everything at once: the emulator's reset (docs/emulator.md).

A test suite resets before every test, so this is a handful of bulk deletes in one
transaction, not the careful paged delete a production batch gets (engine.delete). Only
`server_state` (the server's signing secret) survives.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, select

from conveyor.domain.clock import Clock
from conveyor.storage.tables import (
    accounts_table,
    api_keys,
    batch_chunks,
    batch_operations,
    batch_results,
    batch_webhooks,
    batches,
    idempotency_keys,
    lists,
    members,
    merge_fields,
    metadata,
    request_slots,
    server_state,
    tags,
    webhook_deliveries,
)

# Children before parents, so foreign keys hold at every statement.
_EVERY_TABLE = [table for table in reversed(metadata.sorted_tables) if table is not server_state]


@dataclass(frozen=True)
class Wiped:
    """What went: the accounts, and the archive blobs the caller must delete."""

    accounts: int
    archive_keys: list[str]


class WipeStore:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def everything(self, conn: Connection) -> Wiped:
        keys = list(
            conn.execute(
                select(batches.c.archive_key).where(batches.c.archive_key.is_not(None))
            ).scalars()
        )
        count = int(conn.execute(select(func.count()).select_from(accounts_table)).scalar_one())
        for table in _EVERY_TABLE:
            conn.execute(delete(table))
        return Wiped(count, keys)

    def account(self, conn: Connection, account_pk: int) -> Wiped:
        """Every row of one account; other accounts keep theirs."""
        owned = select(batches.c.id).where(batches.c.account_pk == account_pk)
        keys = list(
            conn.execute(
                select(batches.c.archive_key).where(
                    batches.c.account_pk == account_pk, batches.c.archive_key.is_not(None)
                )
            ).scalars()
        )
        for table in (batch_results, batch_operations, batch_chunks):
            conn.execute(delete(table).where(table.c.batch_id.in_(owned)))
        list_pks = select(lists.c.pk).where(lists.c.account_pk == account_pk)
        for child in (members, tags, merge_fields):
            conn.execute(delete(child).where(child.c.list_pk.in_(list_pks)))
        for table in (
            batches,
            idempotency_keys,
            webhook_deliveries,
            batch_webhooks,
            request_slots,
            lists,
            api_keys,
        ):
            conn.execute(delete(table).where(table.c.account_pk == account_pk))
        gone = conn.execute(delete(accounts_table).where(accounts_table.c.id == account_pk))
        return Wiped(int(gone.rowcount), keys)

    def remaining_rows(self, conn: Connection) -> dict[str, int]:
        """Row counts of every table but `server_state` (what a reset must leave empty)."""
        return {
            table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in _EVERY_TABLE
        }
