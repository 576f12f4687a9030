"""Scaled-out runtime pieces: the broker dispatcher of `conveyor api` and the scheduler lease."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field

from dramatiq import Broker
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from conveyor.runtime.actors import Dispatcher, declare_actors
from conveyor.runtime.bootstrap import Services
from conveyor.runtime.broker import create_broker
from conveyor.storage.database import Database
from conveyor.storage.tables import server_state

log = logging.getLogger("conveyor.runtime")


def broker_dispatcher(services: Services) -> tuple[Broker, Dispatcher]:
    """A broker with the project's actors declared, for processes that only send messages."""
    broker = create_broker(services.settings.broker_url)
    return broker, declare_actors(broker, services.engine, services.webhooks)


@dataclass
class Lease:
    """One holder at a time among processes sharing a database, renewed while alive.

    A lease row (not a session-bound advisory lock) works on SQLite and PostgreSQL alike, and
    a holder that was SIGKILLed loses it when its expiry passes.
    """

    database: Database
    name: str
    seconds: float
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def acquire(self) -> bool:
        try:
            return self._acquire()
        except IntegrityError:
            # Another process created the lease row at the same moment (no row existed to
            # lock): its insert won, so it holds the lease.
            return False

    def _acquire(self) -> bool:
        now = time.time()
        value = f"{self.holder}|{now + self.seconds}"
        with self.database.write() as conn:
            current = conn.execute(
                select(server_state.c.value)
                .where(server_state.c.name == self.name)
                .with_for_update()
            ).scalar()
            if current is None:
                conn.execute(insert(server_state).values(name=self.name, value=value))
                return True
            holder, _, expires = current.rpartition("|")
            if holder != self.holder and float(expires or 0) > now:
                return False
            conn.execute(
                update(server_state).where(server_state.c.name == self.name).values(value=value)
            )
            return True

    def release(self) -> None:
        with self.database.write() as conn:
            current = conn.execute(
                select(server_state.c.value).where(server_state.c.name == self.name)
            ).scalar()
            if current is not None and current.rpartition("|")[0] == self.holder:
                conn.execute(
                    update(server_state)
                    .where(server_state.c.name == self.name)
                    .values(value=f"{self.holder}|0")
                )
