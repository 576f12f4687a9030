"""A named lease row: one holder at a time among processes sharing a database.

A lease row (not a session-bound advisory lock) works on SQLite and PostgreSQL alike, and a
holder that was SIGKILLed loses it when its expiry passes.
"""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from conveyor.domain.clock import Clock
from conveyor.storage.database import Database
from conveyor.storage.tables import server_state


class LeaseStore:
    def __init__(self, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock

    def acquire(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease for `seconds`; false while another holder's is unexpired."""
        try:
            return self._acquire(name, holder, seconds)
        except IntegrityError:
            # Another process created the lease row at the same moment (no row existed to
            # lock): its insert won, so it holds the lease.
            return False

    def _acquire(self, name: str, holder: str, seconds: float) -> bool:
        now = self.clock.now()
        value = f"{holder}|{now + seconds}"
        with self.database.write() as conn:
            current = conn.execute(
                select(server_state.c.value).where(server_state.c.name == name).with_for_update()
            ).scalar()
            if current is None:
                conn.execute(insert(server_state).values(name=name, value=value))
                return True
            current_holder, _, expires = current.rpartition("|")
            if current_holder != holder and float(expires or 0) > now:
                return False
            conn.execute(
                update(server_state).where(server_state.c.name == name).values(value=value)
            )
            return True

    def release(self, name: str, holder: str) -> None:
        with self.database.write() as conn:
            current = conn.execute(
                select(server_state.c.value).where(server_state.c.name == name)
            ).scalar()
            if current is not None and current.rpartition("|")[0] == holder:
                conn.execute(
                    update(server_state)
                    .where(server_state.c.name == name)
                    .values(value=f"{holder}|0")
                )
