"""Pacing: make batches as slow as the real service, so a client's waiting code runs.

Conveyor finishes a small batch in milliseconds; Mailchimp takes seconds to minutes. The
pauses happen outside every transaction (before a batch is planned, after a group commits),
so a slow batch never holds the database's writer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conveyor.domain import problems
from conveyor.domain.problems import FieldError


class PaceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_start_delay_ms: int = Field(default=0, ge=0, le=3_600_000)
    # 0: as fast as Conveyor goes.
    operations_per_second: float = Field(default=0.0, ge=0.0)


def parse_pace(document: dict[str, Any]) -> PaceSpec:
    try:
        return PaceSpec.model_validate(document)
    except ValidationError as exc:
        errors = [
            FieldError(".".join(str(p) for p in e["loc"]), e["msg"])
            for e in exc.errors(include_url=False)
        ]
        raise problems.invalid_resource(errors) from None


@dataclass
class Pace:
    spec: PaceSpec = field(default_factory=PaceSpec)
    # Set on a reset or a new pace: every pause in progress ends at once.
    _changed: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, spec: PaceSpec) -> None:
        with self._lock:
            self.spec = spec
            woken, self._changed = self._changed, threading.Event()
        woken.set()

    def pause(self, seconds: float) -> None:
        """Sleep (real time) unless the pace changes meanwhile."""
        if seconds > 0:
            self._changed.wait(seconds)

    def before_batch(self) -> None:
        self.pause(self.spec.batch_start_delay_ms / 1000)

    def after_operations(self, count: int, elapsed_seconds: float) -> None:
        rate = self.spec.operations_per_second
        if rate > 0 and count:
            self.pause(count / rate - elapsed_seconds)
