"""Helper processes that prepare groups (batches/prepared.py) on the machine's other cores.

The server's process keeps the writer; each helper opens the SQLite file read-only and
answers groups from snapshots. A helper holds no state worth keeping: if one dies, the pool
is built again and the group runs the plain way meanwhile. The pool answers nothing until its
processes are up, so no group ever waits for a process to start.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from conveyor.batches.prepared import PreparedGroup, prepare_group
from conveyor.domain.accounts import Account
from conveyor.domain.chunking import ChunkRange
from conveyor.domain.clock import SystemClock
from conveyor.marketing.routing import RouteTable
from conveyor.marketing.table import marketing_routes
from conveyor.runtime.gc_tuning import tune_garbage_collector
from conveyor.storage.batches import BatchStore
from conveyor.storage.database import Database, open_read_only
from conveyor.storage.marketing_stores import MarketingStores

if TYPE_CHECKING:
    # Types only: a helper process imports this module, and the runtime's parts would bring
    # the engine, the webhooks and httpx (with its command line: rich, pygments, click),
    # ~15 MB of a helper's RSS that it never uses.
    from conveyor.runtime.parts import RuntimeParts

log = logging.getLogger("conveyor.batches")


def group_helpers_for(parts: RuntimeParts) -> GroupHelpers | None:
    """The helpers a one-machine runtime should run, or None: PostgreSQL (worker processes
    use every core already), an in-memory database (not shared), a clock that tests move
    (another process cannot share it), or `CONVEYOR_BATCH_PREPARE_PROCESSES=0`."""
    batches, database = parts.settings.batches, parts.database
    processes = batches.prepare_processes
    if processes is None:
        processes = (os.cpu_count() or 1) - 1  # the server's process keeps a core
    if (
        processes == 0
        or not database.is_sqlite
        or database.checkpointer is None
        or type(parts.clock) is not SystemClock
    ):
        return None
    return GroupHelpers(database.url, processes, min_operations=batches.prepare_min_operations)


class GroupHelpers:
    """Prepares groups in `processes` helper processes over the SQLite database at `url`
    (the engine's `GroupPreparer`)."""

    def __init__(self, url: str, processes: int, *, min_operations: int) -> None:
        self.url = url
        self.processes = processes
        # A smaller group is not worth the trip to another process and back.
        self.min_operations = min_operations
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._ready: list[Future[None]] = []
        # The pool each group went to, while its future lives.
        self._pool_of: WeakKeyDictionary[Future[PreparedGroup | None], ProcessPoolExecutor]
        self._pool_of = WeakKeyDictionary()
        self._closed = False
        self._announced = False
        # Groups a helper answered (the writer may still find one stale), for tests.
        self.prepared = 0

    def prepare(
        self, account: Account, api_root: str, batch_id: str, start: int, stop: int
    ) -> Future[PreparedGroup | None] | None:
        """The group being prepared, or None: too small, or no helper ready for it."""
        if stop - start < self.min_operations:
            return None
        pool = self._ready_pool()
        if pool is None:
            return None
        try:
            future = pool.submit(_prepare, account, api_root, batch_id, start, stop)
        except (BrokenProcessPool, RuntimeError):
            self._discard(pool)
            return None
        self._pool_of[future] = pool
        return future

    def result(self, future: Future[PreparedGroup | None] | None) -> PreparedGroup | None:
        """What a helper prepared; None if it could not (the group then runs the plain way)."""
        if future is None:
            return None
        try:
            prepared = future.result()
        except BrokenProcessPool:
            log.warning("a group-preparing process died; starting the helpers again")
            pool = self._pool_of.get(future)
            if pool is not None:
                self._discard(pool)  # that pool only: a newer one may be up already
            return None
        except Exception:
            log.exception("preparing a group failed; running it in the writer's process")
            return None
        if prepared is not None:
            self.prepared += 1
        return prepared

    def plan(self, batch_id: str, chunk_size: int) -> list[ChunkRange] | None:
        """The batch's chunks as a helper planned them; None when none is ready or it
        failed (the caller plans them itself)."""
        pool = self._ready_pool()
        if pool is None:
            return None
        try:
            return pool.submit(_plan, batch_id, chunk_size).result()
        except BrokenProcessPool:
            self._discard(pool)
            return None
        except Exception:
            log.exception("planning a batch's chunks in a helper failed; planning them here")
            return None

    def warm_up(self, timeout: float | None = None) -> bool:
        """Start the helpers now rather than on the first large group; True once they are
        ready (waiting at most `timeout` seconds for it; None: not at all)."""
        self._ready_pool()
        with self._lock:
            ready = list(self._ready)
        if timeout is not None:
            wait(ready, timeout=timeout)
        return bool(ready) and all(future.done() for future in ready)

    def _ready_pool(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._closed:
                return None
            if self._pool is None:
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(
                    self.processes,
                    mp_context=context,
                    initializer=_start_helper,
                    initargs=(self.url, os.getpid()),
                )
                # Warm every process up; until they are, groups run the plain way.
                self._ready = [self._pool.submit(_ping) for _ in range(self.processes)]
                for future in self._ready:
                    future.add_done_callback(self._announce)
            if not all(future.done() for future in self._ready):
                return None
            return self._pool

    def _announce(self, _warmed: Future[None]) -> None:
        with self._lock:
            if self._announced or not all(future.done() for future in self._ready):
                return
            self._announced = True
        log.info("%d group helper process(es) ready", self.processes)

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
                self._announced = False
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


# --- in a helper process ---------------------------------------------------------------------


@dataclass
class _HelperParts:
    database: Database
    routes: RouteTable
    store: BatchStore


# One per helper process, built by the pool's initializer: the process exists to serve it.
_parts: _HelperParts | None = None


def _start_helper(url: str, parent_pid: int) -> None:
    global _parts
    # ^C reaches the whole process group: the server stops its helpers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    clock = SystemClock()
    _parts = _HelperParts(
        open_read_only(url), marketing_routes(MarketingStores(clock)), BatchStore(clock)
    )
    threading.Thread(target=_exit_with, args=(parent_pid,), daemon=True).start()
    tune_garbage_collector()


def _exit_with(parent_pid: int) -> None:
    """A server killed outright cannot stop its helpers: they leave when it is gone."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(0)


def _ping() -> None:
    return None


def _plan(batch_id: str, chunk_size: int) -> list[ChunkRange]:
    assert _parts is not None
    with _parts.database.snapshot() as conn:
        return _parts.store.plan(conn, batch_id, chunk_size)


def _prepare(
    account: Account, api_root: str, batch_id: str, start: int, stop: int
) -> PreparedGroup | None:
    assert _parts is not None
    with _parts.database.snapshot() as conn:
        return prepare_group(
            conn, _parts.store, _parts.routes, account, batch_id, start, stop, api_root=api_root
        )
