"""Wiring: settings in, a ready set of services out. No module-level state anywhere."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from conveyor.batches.engine import BatchEngine
from conveyor.batches.webhooks import WebhookService
from conveyor.domain.retry import RetryPolicy
from conveyor.domain.webhook_targets import TargetPolicy
from conveyor.marketing.api import marketing_routes
from conveyor.marketing.routing import RouteTable
from conveyor.settings import Settings
from conveyor.storage import accounts
from conveyor.storage.blobs import BlobStore, open_blob_store
from conveyor.storage.database import Database, open_database
from conveyor.storage.migrate import upgrade
from conveyor.storage.secrets import load_or_create_secret

log = logging.getLogger("conveyor")


@dataclass
class Services:
    settings: Settings
    database: Database
    routes: RouteTable
    blobs: BlobStore
    engine: BatchEngine
    secret: bytes
    webhooks: WebhookService

    def close(self) -> None:
        self.webhooks.client.close()
        self.database.dispose()


def open_services(settings: Settings, *, migrate: bool = True) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = open_database(settings.resolved_database_url)
    if migrate:
        upgrade(database)
    routes = marketing_routes()
    blobs = open_blob_store(settings.blob_url, settings.blob_dir, settings.s3_options)
    engine = BatchEngine(database, routes, blobs, settings.batches)
    secret = load_or_create_secret(database, settings.secret)
    return Services(
        settings,
        database,
        routes,
        blobs,
        engine,
        secret,
        webhook_service(settings, database, secret),
    )


def webhook_service(settings: Settings, database: Database, secret: bytes) -> WebhookService:
    batches = settings.batches
    return WebhookService(
        database=database,
        client=httpx.Client(),
        policy=TargetPolicy(
            allow_loopback=batches.webhook_allow_loopback,
            allow_private=batches.webhook_allow_private,
        ),
        retry=RetryPolicy(
            max_attempts=batches.webhook_max_attempts,
            first_delay_seconds=batches.webhook_first_retry_seconds,
        ),
        download_secret=secret,
        url_ttl_seconds=batches.url_ttl_seconds,
        timeout_seconds=batches.webhook_timeout_seconds,
    )


@dataclass(frozen=True)
class FirstKey:
    account_id: str
    key: str


def ensure_first_key(database: Database, dc: str = "us1") -> FirstKey | None:
    """On a fresh install, create an account and a key so the server is usable at once."""
    with database.write() as conn:
        if accounts.count_active_keys(conn) > 0:
            return None
        account_id = accounts.create_account(conn)
        return FirstKey(account_id, accounts.create_key(conn, account_id, dc))
