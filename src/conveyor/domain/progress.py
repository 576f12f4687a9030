"""Live progress of a batch: its rate and an estimate of the time left, from polled counters.

A watcher reads the batch row every few hundred milliseconds; the rate is measured over the
last `window_seconds` of those readings, so it follows a batch that speeds up or slows down
(another batch starting beside it, a worker added) instead of averaging its whole life.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Rate:
    ops_per_second: float
    # None while there is no rate to extrapolate from (the first reading, a stalled batch).
    eta_seconds: float | None


@dataclass
class ProgressMeter:
    window_seconds: float = 10.0
    _readings: deque[tuple[float, int]] = field(default_factory=deque)

    def observe(self, at: float, finished: int, remaining: int) -> Rate:
        """Record that `finished` operations were done at time `at` (seconds, monotonic)
        with `remaining` still to run, and answer the rate and the time left."""
        readings = self._readings
        if readings and at < readings[-1][0]:
            raise ValueError("readings must come in time order")
        readings.append((at, finished))
        while len(readings) > 2 and at - readings[1][0] >= self.window_seconds:
            readings.popleft()
        first_at, first_finished = readings[0]
        span = at - first_at
        rate = max(finished - first_finished, 0) / span if span > 0 else 0.0
        if remaining <= 0:
            return Rate(round(rate, 1), 0.0)
        if rate <= 0:
            return Rate(0.0, None)
        return Rate(round(rate, 1), round(remaining / rate, 1))
