"""The per-account limit on requests in flight (FACTS.md: 10 simultaneous connections)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol


class ConcurrencyLimiter(Protocol):
    def slot(self, account_pk: int) -> AbstractContextManager[bool]: ...


@dataclass
class InProcessLimiter:
    """Counts requests in flight per account inside this process."""

    limit: int
    _in_flight: Counter[int] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def slot(self, account_pk: int) -> Iterator[bool]:
        with self._lock:
            granted = self._in_flight[account_pk] < self.limit
            if granted:
                self._in_flight[account_pk] += 1
        try:
            yield granted
        finally:
            if granted:
                with self._lock:
                    self._in_flight[account_pk] -= 1
                    if self._in_flight[account_pk] <= 0:
                        del self._in_flight[account_pk]
