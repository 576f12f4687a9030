"""Scaled-out runtime pieces: the broker dispatcher of `conveyor api` and the scheduler lease."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field

from dramatiq import Broker

from conveyor.runtime.actors import Dispatcher, declare_actors
from conveyor.runtime.broker import create_broker
from conveyor.runtime.parts import RuntimeParts
from conveyor.storage.leases import LeaseStore

log = logging.getLogger("conveyor.runtime")


def broker_dispatcher(services: RuntimeParts) -> tuple[Broker, Dispatcher]:
    """A broker with the project's actors declared, for processes that only send messages."""
    broker = create_broker(services.settings.broker_url)
    return broker, declare_actors(broker, services.engine, services.webhooks)


@dataclass
class Lease:
    """One holder at a time among processes sharing a database, renewed while alive."""

    store: LeaseStore
    name: str
    seconds: float
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def acquire(self) -> bool:
        return self.store.acquire(self.name, self.holder, self.seconds)

    def release(self) -> None:
        self.store.release(self.name, self.holder)
