"""The server secret that signs download URLs: from settings, else kept in the database.

Keeping it in the database means every API process of a scaled-out deployment signs and
verifies with the same secret without any extra configuration.
"""

from __future__ import annotations

import secrets

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from conveyor.storage.database import Database
from conveyor.storage.tables import server_state

SECRET_NAME = "download_signing_secret"


def load_or_create_secret(database: Database, configured: str | None) -> bytes:
    if configured:
        return configured.encode("utf-8")
    with database.read() as conn:
        found = conn.execute(
            select(server_state.c.value).where(server_state.c.name == SECRET_NAME)
        ).scalar()
    if found is None:
        try:
            with database.write() as conn:
                conn.execute(
                    insert(server_state).values(name=SECRET_NAME, value=secrets.token_hex(32))
                )
        except IntegrityError:
            pass  # another process created it first: use theirs
        with database.read() as conn:
            found = conn.execute(
                select(server_state.c.value).where(server_state.c.name == SECRET_NAME)
            ).scalar_one()
    return str(found).encode("utf-8")
