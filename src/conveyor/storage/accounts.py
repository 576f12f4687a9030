"""Accounts and API keys. Keys are stored as SHA-256 hashes; only a short hint is kept."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection, and_, func, select

from conveyor.domain.accounts import Account
from conveyor.domain.clock import Clock, now_iso
from conveyor.domain.ids import hex_id, key_hash, new_api_key
from conveyor.storage.tables import accounts_table, api_keys

KEY_SHAPE = re.compile(r"[0-9a-f]{32}-[a-z]{2,8}[0-9]{0,4}")
DC_SHAPE = re.compile(r"[a-z]{2,8}[0-9]{0,4}")


@dataclass(frozen=True)
class KeyInfo:
    hint: str
    dc: str
    account_id: str
    created_at: str
    revoked_at: str | None


class UnknownAccount(LookupError):
    pass


class AccountStore:
    """Accounts and their keys, with time from `clock`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def create_account(self, conn: Connection, name: str = "Conveyor", email: str = "") -> str:
        account_id = hex_id(25)
        conn.execute(
            accounts_table.insert().values(
                account_id=account_id,
                account_name=name,
                email=email or f"owner@{account_id[:8]}.conveyor.local",
                created_at=now_iso(self.clock),
            )
        )
        return account_id

    def create_key(self, conn: Connection, account_id: str, dc: str = "us1") -> str:
        if not DC_SHAPE.fullmatch(dc):
            raise ValueError(
                f"not a datacenter name: {dc!r} (expected letters then digits, e.g. us1)"
            )
        account_pk = conn.execute(
            select(accounts_table.c.id).where(accounts_table.c.account_id == account_id)
        ).scalar()
        if account_pk is None:
            raise UnknownAccount(account_id)
        key = new_api_key(dc)
        self._insert_key(conn, account_pk, key, dc)
        return key

    def _insert_key(self, conn: Connection, account_pk: int, key: str, dc: str) -> None:
        conn.execute(
            api_keys.insert().values(
                key_hash=key_hash(key),
                account_pk=account_pk,
                key_hint=f"{key[:4]}…{key[28:32]}",
                dc=dc,
                created_at=now_iso(self.clock),
            )
        )

    def adopt_key(self, conn: Connection, key: str) -> Account | None:
        """The account of a well-formed `key`, made for it on first use (emulate mode, as
        stripe-mock takes any test key); None for a malformed key or a revoked one.

        Two first uses racing may both insert: the caller retries the lookup when the
        database refuses the second key row.
        """
        if not KEY_SHAPE.fullmatch(key):
            return None
        if conn.execute(
            select(api_keys.c.key_hash).where(api_keys.c.key_hash == key_hash(key))
        ).first():
            return self.account_for_key(conn, key)
        account_id = self.create_account(conn)
        account_pk = conn.execute(
            select(accounts_table.c.id).where(accounts_table.c.account_id == account_id)
        ).scalar_one()
        self._insert_key(conn, int(account_pk), key, key.rsplit("-", 1)[1])
        return self.account_for_key(conn, key)

    def count_active_keys(self, conn: Connection) -> int:
        return int(
            conn.execute(
                select(func.count()).select_from(api_keys).where(api_keys.c.revoked_at.is_(None))
            ).scalar_one()
        )

    def list_keys(self, conn: Connection) -> list[KeyInfo]:
        rows = conn.execute(
            select(
                api_keys.c.key_hint,
                api_keys.c.dc,
                accounts_table.c.account_id,
                api_keys.c.created_at,
                api_keys.c.revoked_at,
            )
            .join(accounts_table, accounts_table.c.id == api_keys.c.account_pk)
            .order_by(api_keys.c.created_at)
        ).all()
        return [KeyInfo(*row) for row in rows]

    def revoke_key(self, conn: Connection, key: str) -> bool:
        result = conn.execute(
            api_keys.update()
            .where(and_(api_keys.c.key_hash == key_hash(key), api_keys.c.revoked_at.is_(None)))
            .values(revoked_at=now_iso(self.clock))
        )
        return bool(result.rowcount)

    def account_for_key(self, conn: Connection, key: str) -> Account | None:
        if not KEY_SHAPE.fullmatch(key):
            return None
        return self.account_for_key_hash(conn, key_hash(key))

    def account_for_key_hash(self, conn: Connection, digest: str) -> Account | None:
        """The account of the active key whose SHA-256 is `digest` (a dashboard session
        holds only that); None once the key is revoked."""
        row = conn.execute(
            select(
                accounts_table.c.id,
                accounts_table.c.account_id,
                accounts_table.c.account_name,
                accounts_table.c.email,
                api_keys.c.dc,
                accounts_table.c.created_at,
            )
            .join(accounts_table, accounts_table.c.id == api_keys.c.account_pk)
            .where(and_(api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None)))
        ).first()
        return None if row is None else Account(*row)
