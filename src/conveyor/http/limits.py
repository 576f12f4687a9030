"""The per-account limit on requests in flight: 10 at once (docs/compatibility.md)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.storage.request_slots import RequestSlotStore


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


# Drop expired holders, then take a slot if one is free: one atomic step on the server.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""


@dataclass
class RedisLimiter:
    """A lease-based semaphore per account in a Redis sorted set (member = holder token,
    score = lease expiry). A SIGKILLed holder's slot expires with its lease; Dramatiq's
    ConcurrentRateLimiter was measured to leak in that case (docs/architecture.md decision 9)."""

    client: Any
    limit: int
    lease_seconds: float
    prefix: str = "conveyor:slots:"

    def __post_init__(self) -> None:
        self._acquire = self.client.register_script(_ACQUIRE)

    @contextmanager
    def slot(self, account_pk: int) -> Iterator[bool]:
        key = f"{self.prefix}{account_pk}"
        token = uuid.uuid4().hex
        now = time.time()
        lease_ms = int(self.lease_seconds * 1000)
        args = [now, now + self.lease_seconds, self.limit, token, lease_ms]
        granted = bool(self._acquire(keys=[key], args=args))
        try:
            yield granted
        finally:
            if granted:
                self.client.zrem(key, token)


@dataclass
class DatabaseLimiter:
    """The same lease-based semaphore in a table, for deployments without Redis."""

    slots: RequestSlotStore
    limit: int
    lease_seconds: float

    @contextmanager
    def slot(self, account_pk: int) -> Iterator[bool]:
        token = self.slots.acquire(account_pk, self.limit, self.lease_seconds)
        try:
            yield token is not None
        finally:
            if token is not None:
                self.slots.release(token)


def create_limiter(
    limiter_url: str | None, slots: RequestSlotStore, limit: int, lease_seconds: float
) -> ConcurrencyLimiter:
    if not limiter_url:
        return InProcessLimiter(limit)
    if limiter_url == "database":
        return DatabaseLimiter(slots, limit, lease_seconds)
    if limiter_url.startswith(("redis://", "rediss://", "unix://")):
        import redis

        return RedisLimiter(redis.Redis.from_url(limiter_url), limit, lease_seconds)
    raise ValueError(f"unsupported limiter URL (expected redis:// or 'database'): {limiter_url}")
