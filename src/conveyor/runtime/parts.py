"""What the runtime is built from; the composition root provides it."""

from __future__ import annotations

from typing import Protocol

from conveyor.batches.engine import BatchEngine
from conveyor.batches.webhooks import WebhookService
from conveyor.settings import Settings


class RuntimeParts(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> BatchEngine: ...
    @property
    def webhooks(self) -> WebhookService: ...
