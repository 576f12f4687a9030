"""The composition root: settings in, every part of Conveyor built and wired, nothing global.

The CLI, the ASGI app, the runtime and the tests all get their parts from `Services`. Parts
are built on first use, so a command that only needs the database (`conveyor keys list`)
opens no webhook client and no broker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

from conveyor.batches.engine import BatchEngine
from conveyor.batches.group_hooks import HookChain
from conveyor.batches.service import BatchService
from conveyor.batches.webhook_http import Outbound
from conveyor.batches.webhooks import WebhookService
from conveyor.domain.clock import Clock, OffsetClock, SystemClock
from conveyor.domain.retry import RetryPolicy
from conveyor.domain.states import BatchStatus
from conveyor.domain.webhook_targets import TargetPolicy
from conveyor.emulator.controls import EmulatorState, TestControls
from conveyor.marketing.routing import RouteTable
from conveyor.marketing.table import marketing_routes
from conveyor.observability.hooks import MetricsHook
from conveyor.observability.metrics import ConveyorMetrics
from conveyor.observability.steps import ObservedBatchEngine, ObservedWebhookService
from conveyor.settings import Settings
from conveyor.storage.accounts import AccountStore
from conveyor.storage.batch_counts import BatchCounts
from conveyor.storage.batch_results import BatchResultStore
from conveyor.storage.batches import BatchStore
from conveyor.storage.blobs import BlobStore, open_blob_store
from conveyor.storage.database import Database, open_database
from conveyor.storage.idempotency import IdempotencyStore
from conveyor.storage.leases import LeaseStore
from conveyor.storage.marketing_stores import MarketingStores
from conveyor.storage.request_slots import RequestSlotStore
from conveyor.storage.secrets import load_or_create_secret
from conveyor.storage.webhooks import WebhookStore
from conveyor.storage.wipe import WipeStore

log = logging.getLogger("conveyor")


@dataclass
class Services:
    settings: Settings
    database: Database
    clock: Clock = field(default_factory=SystemClock)

    # --- storage -------------------------------------------------------------------------

    @cached_property
    def accounts(self) -> AccountStore:
        return AccountStore(self.clock)

    @cached_property
    def batch_store(self) -> BatchStore:
        return BatchStore(self.clock)

    @cached_property
    def webhook_store(self) -> WebhookStore:
        return WebhookStore(self.clock)

    @cached_property
    def idempotency_keys(self) -> IdempotencyStore:
        return IdempotencyStore(self.clock)

    @cached_property
    def batch_results(self) -> BatchResultStore:
        return BatchResultStore()

    @cached_property
    def marketing_stores(self) -> MarketingStores:
        return MarketingStores(self.clock)

    @cached_property
    def request_slots(self) -> RequestSlotStore:
        return RequestSlotStore(self.database, self.clock)

    @cached_property
    def leases(self) -> LeaseStore:
        return LeaseStore(self.database, self.clock)

    @cached_property
    def blobs(self) -> BlobStore:
        settings = self.settings
        return open_blob_store(settings.blob_url, settings.blob_dir, settings.s3_options)

    @cached_property
    def secret(self) -> bytes:
        return load_or_create_secret(self.database, self.settings.secret)

    # --- services ------------------------------------------------------------------------

    @cached_property
    def routes(self) -> RouteTable:
        return marketing_routes(self.marketing_stores)

    @cached_property
    def engine(self) -> BatchEngine:
        # Each step logged as one line with its batch id (observability/steps.py).
        return ObservedBatchEngine(
            self.database,
            self.routes,
            self.blobs,
            self.settings.batches,
            self.batch_store,
            self.webhook_store,
            self.idempotency_keys,
            self.group_hooks,
        )

    @cached_property
    def group_hooks(self) -> HookChain:
        """What watches the engine's groups; the emulator and the metrics add theirs."""
        chain = HookChain()
        if self.settings.test_controls:
            chain.hooks.append(self.emulator_state.hooks)
        chain.hooks.append(MetricsHook(self.metrics))
        return chain

    @cached_property
    def metrics(self) -> ConveyorMetrics | None:
        """This server's Prometheus registry (none when `metrics_enabled` is off)."""
        if not self.settings.metrics_enabled:
            return None
        metrics = ConveyorMetrics()
        counts, database = BatchCounts(), self.database

        def read_batch_counts() -> dict[BatchStatus, int]:
            with database.read() as conn:
                return counts.by_status(conn)

        metrics.watch_batches(read_batch_counts)
        return metrics

    @cached_property
    def emulator_state(self) -> EmulatorState:
        """The journal, fault rules and pace the test controls set (docs/emulator.md)."""
        return EmulatorState(self.clock)

    @cached_property
    def test_controls(self) -> TestControls:
        return TestControls(
            state=self.emulator_state,
            database=self.database,
            routes=self.routes,
            blobs=self.blobs,
            engine=self.engine,
            webhooks=self.webhooks,
            wipe=WipeStore(self.clock),
            sweep_idle_seconds=self.settings.batches.sweep_idle_seconds,
        )

    @cached_property
    def batches(self) -> BatchService:
        return BatchService(
            database=self.database,
            store=self.batch_store,
            webhook_store=self.webhook_store,
            engine=self.engine,
            blobs=self.blobs,
            secret=self.secret,
            settings=self.settings.batches,
            results=self.batch_results,
            idempotency_keys=self.idempotency_keys,
        )

    @cached_property
    def webhooks(self) -> WebhookService:
        batches = self.settings.batches
        return ObservedWebhookService(
            metrics=self.metrics,
            database=self.database,
            store=self.webhook_store,
            outbound=Outbound(),
            policy=TargetPolicy(
                allow_loopback=batches.webhook_allow_loopback,
                allow_private=batches.webhook_allow_private,
            ),
            retry=RetryPolicy(
                max_attempts=batches.webhook_max_attempts,
                first_delay_seconds=batches.webhook_first_retry_seconds,
            ),
            download_secret=self.secret,
            url_ttl_seconds=batches.url_ttl_seconds,
            max_webhooks=batches.max_webhooks,
            timeout_seconds=batches.webhook_timeout_seconds,
            lease_margin_seconds=batches.webhook_lease_margin_seconds,
            account_concurrency=batches.webhook_account_concurrency,
        )

    def with_settings(self, settings: Settings) -> Services:
        """The same storage (stores, blobs, secret) under other settings: for a second app
        with other limits over one database."""
        other = Services(settings, self.database, self.clock)
        for name in _STORAGE_PARTS:
            if name in self.__dict__:
                other.__dict__[name] = self.__dict__[name]
        return other

    def close(self) -> None:
        self.database.dispose()


_STORAGE_PARTS = (
    "accounts",
    "batch_store",
    "batch_results",
    "idempotency_keys",
    "webhook_store",
    "marketing_stores",
    "request_slots",
    "leases",
    "blobs",
    "secret",
)


def open_services(
    settings: Settings, *, migrate: bool = True, clock: Clock | None = None
) -> Services:
    """Open the database (migrated unless told not to) and wire everything around it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = open_database(settings.resolved_database_url)
    database.check()
    if migrate:
        # Imported here: Alembic costs ~0.15 s to import, and a process that does not
        # migrate (an emulator seeded from a template) need not pay it.
        from conveyor.storage.migrate import upgrade

        upgrade(database)
    if clock is None:
        # Test controls move time (POST /_conveyor/clock): a clock that can be moved.
        clock = OffsetClock() if settings.test_controls else SystemClock()
    return Services(settings, database, clock)


@dataclass(frozen=True)
class FirstKey:
    account_id: str
    key: str


def ensure_first_key(services: Services, dc: str = "us1") -> FirstKey | None:
    """On a fresh install, create an account and a key so the server is usable at once."""
    accounts = services.accounts
    with services.database.write() as conn:
        if accounts.count_active_keys(conn) > 0:
            return None
        account_id = accounts.create_account(conn)
        return FirstKey(account_id, accounts.create_key(conn, account_id, dc))
