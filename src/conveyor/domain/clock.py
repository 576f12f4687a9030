"""The one clock every wait reads: retention, URL expiry, leases, retry schedules.

Storage and the services take a `Clock` instead of calling `time.time()`, so a test (or the
emulator) can hold time still or move it forward, and everything that waits moves together
(docs/architecture.md, "One clock").
"""

from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (wall time, possibly virtual)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for measuring intervals."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class OffsetClock:
    """The machine's clock moved forward by an offset that only grows (virtual time).

    Advancing it makes every deadline that storage and the services compute arrive sooner,
    without waiting: batch retention, signed URL expiry, webhook retries, idempotency keys.
    """

    offset_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> float:
        return time.time() + self.offset_seconds

    def monotonic(self) -> float:
        return time.monotonic() + self.offset_seconds

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self.offset_seconds += seconds


@dataclass
class FixedClock:
    """A clock that moves only when told to: for tests."""

    at: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    def now(self) -> float:
        return self.at

    def monotonic(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.at += seconds


def iso_at(timestamp: float) -> str:
    """Mailchimp's timestamp format: ISO 8601 with `+00:00`, whole seconds."""
    second = math.floor(timestamp)
    # `fromtimestamp` rounds to the microsecond: only the last microsecond of a second can
    # round up into the next one, so it is formatted the long way.
    if timestamp - second < 0.999999:
        return _iso_second(second)
    return _format(timestamp)


# Every member a batch writes is stamped with the time: formatting it once per second
# instead of once per call was ~4% of an operation's CPU.
@functools.lru_cache(maxsize=64)
def _iso_second(second: int) -> str:
    return _format(second)


def _format(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).replace(microsecond=0).isoformat()


def now_iso(clock: Clock) -> str:
    return iso_at(clock.now())
