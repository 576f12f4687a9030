"""Folding SQLite's write-ahead log into the database file, off the writers' path.

By default the connection whose commit takes the WAL past 1,000 pages copies it into the
database file and syncs it, inside that commit and with the write lock's turn still held: it
cost ~10 ms of a 1,000-operation batch's ~110 ms and 22% of a 1M batch's execution
(docs/benchmarks.md, 2026-11-29), and every writer queued behind it waited too. Here a
thread with its own connection runs a PASSIVE checkpoint shortly after commits: it copies
what it can without taking any lock a writer or reader needs, while the writers go on
appending to the log. The sqlite3 module lets go of the GIL inside SQLite, so on a machine
with two cores the copy runs beside the engine instead of in its way.

The writers keep an automatic checkpoint, at a much larger size, as a backstop: should this
thread fall behind (or a reader's old snapshot stop it from finishing), the log still stops
growing somewhere.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("conveyor.storage")

# The writers' own automatic checkpoint, in pages (4 KiB): 40 MiB of log, ten times SQLite's
# default, reached only when the background checkpoint cannot keep up (or a reader's old
# snapshot keeps it from finishing).
BACKSTOP_AUTOCHECKPOINT_PAGES = 10_000


class WalCheckpointer:
    """A daemon thread that checkpoints one SQLite database's WAL after commits.

    `committed()` is called after each write transaction's commit; checkpoints follow at
    most every `min_interval_seconds`, so a stream of small commits costs one checkpoint
    per interval, not one each.
    """

    def __init__(self, path: str, *, min_interval_seconds: float = 0.05) -> None:
        self._path = path
        self._min_interval = min_interval_seconds
        self._wake = threading.Condition()
        self._commits = 0  # commits announced so far
        self._folded = 0  # commits covered by the last finished checkpoint
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name="conveyor-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def committed(self) -> None:
        with self._wake:
            self._commits += 1
            self._wake.notify_all()

    def join(self, timeout: float = 10.0) -> bool:
        """Wait until a checkpoint has run after every commit announced so far (tests).
        False if that took longer than `timeout` seconds."""
        with self._wake:
            target = self._commits
            return self._wake.wait_for(lambda: self._folded >= target, timeout)

    def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join()

    def _run(self) -> None:
        # Opened at the first commit, not before: by then the file exists and is in WAL mode.
        connection: sqlite3.Connection | None = None
        try:
            while True:
                with self._wake:
                    self._wake.wait_for(lambda: self._stopping or self._commits > self._folded)
                    if self._stopping:
                        return
                    covered = self._commits
                try:
                    if connection is None:
                        connection = sqlite3.connect(
                            self._path, isolation_level=None, check_same_thread=False
                        )
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    # The backstop checkpoint still bounds the log; try again after commits.
                    log.warning("WAL checkpoint of %s failed", self._path, exc_info=True)
                with self._wake:
                    self._folded = covered
                    self._wake.notify_all()
                    # Sleeps, but wakes at once to stop.
                    self._wake.wait_for(lambda: self._stopping, self._min_interval)
        finally:
            if connection is not None:
                connection.close()
