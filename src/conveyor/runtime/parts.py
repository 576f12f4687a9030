"""What the runtime is built from; the composition root provides it."""

from __future__ import annotations

from typing import Protocol

from conveyor.batches.engine import BatchEngine
from conveyor.batches.webhooks import WebhookService
from conveyor.domain.clock import Clock
from conveyor.settings import Settings
from conveyor.storage.database import Database


class RuntimeParts(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> BatchEngine: ...
    @property
    def webhooks(self) -> WebhookService: ...
    @property
    def database(self) -> Database: ...
    @property
    def clock(self) -> Clock: ...
