"""The test controls' operations, without HTTP: reset, fixtures, virtual time, and the state
(journal, faults, pace) that the HTTP edge and the engine's hook share."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.batches.engine import BatchEngine
from conveyor.batches.webhooks import WebhookService
from conveyor.domain import problems
from conveyor.domain.accounts import Account
from conveyor.domain.clock import Clock
from conveyor.domain.steps import FollowUp
from conveyor.emulator.faults import FaultBook
from conveyor.emulator.fixtures import load_fixtures, refused
from conveyor.emulator.hooks import EmulatorHooks
from conveyor.emulator.journal import Journal
from conveyor.emulator.pace import Pace, PaceSpec
from conveyor.marketing.routing import RouteTable
from conveyor.storage.blobs import BlobStore
from conveyor.storage.database import Database
from conveyor.storage.wipe import Wiped, WipeStore

log = logging.getLogger("conveyor.emulator")


class MovableClock(Protocol):
    def now(self) -> float: ...
    def monotonic(self) -> float: ...
    def advance(self, seconds: float) -> None: ...


@dataclass
class EmulatorState:
    """What the test controls set and the request path and the engine read."""

    clock: Clock
    journal: Journal = field(default_factory=Journal)
    faults: FaultBook = field(default_factory=FaultBook)
    pace: Pace = field(default_factory=Pace)

    @property
    def hooks(self) -> EmulatorHooks:
        return EmulatorHooks(self.journal, self.faults, self.pace, self.clock)


@dataclass
class TestControls:
    __test__ = False  # not a pytest test class, whatever its name

    state: EmulatorState
    database: Database
    routes: RouteTable
    blobs: BlobStore
    engine: BatchEngine
    webhooks: WebhookService
    wipe: WipeStore
    sweep_idle_seconds: float

    def reset(self, account: Account | None = None) -> Wiped:
        """Everything gone (or one account's everything): rows, archives, journal, faults."""
        with self.database.write() as conn:
            wiped = (
                self.wipe.everything(conn)
                if account is None
                else self.wipe.account(conn, account.pk)
            )
        for key in wiped.archive_keys:
            try:
                self.blobs.delete(key)
            except Exception:  # a missing archive is already what a reset wants
                log.debug("reset: archive %s was already gone", key)
        if account is None:
            self.state.journal.clear()
            self.state.faults.clear()
            self.state.pace.set(PaceSpec())
        else:
            self.state.journal.clear(account.pk)
            self.state.faults.clear(account.pk)
        return wiped

    def load(self, account: Account, document: dict[str, Any], api_root: str) -> dict[str, Any]:
        with self.database.write() as conn:
            load = load_fixtures(conn, self.routes, account, document, api_root)
            if load.errors:
                raise refused(load)  # leaving the block rolls every part back
        return {"account_id": account.account_id, "lists": load.lists}

    def advance(self, seconds: float) -> list[FollowUp]:
        """Move virtual time; purge what expired; answer the work now due (to dispatch)."""
        clock = self.state.clock
        if not hasattr(clock, "advance"):
            raise problems.bad_request("This server's clock is the system's; it cannot move.")
        if seconds < 0:
            raise problems.bad_request("Time only moves forward: 'advance' must be >= 0.")
        movable: MovableClock = clock  # type: ignore[assignment]
        movable.advance(seconds)
        while self.engine.purge_expired():
            pass
        self.engine.finish_cleanups(idle_seconds=0)
        return [
            *self.engine.sweep(idle_seconds=self.sweep_idle_seconds),
            *self.webhooks.sweep(idle_seconds=0),
        ]
