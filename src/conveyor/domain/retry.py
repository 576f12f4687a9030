"""Retry timing for webhook deliveries: exponential backoff with full jitter on the top half."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    first_delay_seconds: float = 36.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.first_delay_seconds < 0 or self.factor < 1:
            raise ValueError("max_attempts ≥ 1, first_delay_seconds ≥ 0 and factor ≥ 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")

    def delay_after(self, attempts_made: int, rng: random.Random | None = None) -> float | None:
        """Seconds to wait after `attempts_made` failed attempts, or None when out of tries.

        Jitter spreads the retries of many deliveries that failed together (a receiver that
        was down) so they do not hit it again all at the same second.
        """
        if attempts_made >= self.max_attempts:
            return None
        base = self.first_delay_seconds * self.factor ** (attempts_made - 1)
        spread = (rng or random).uniform(1 - self.jitter, 1) if self.jitter else 1.0
        return base * spread
