"""The composition root builds a part only when something uses it."""

from __future__ import annotations

from pathlib import Path

from conveyor.composition import open_services
from conveyor.settings import Settings


def test_a_database_only_command_opens_no_webhook_client(tmp_path: Path) -> None:
    services = open_services(Settings(data_dir=tmp_path))
    try:
        with services.database.read() as conn:
            assert services.accounts.list_keys(conn) == []
        built = set(vars(services))
        assert "accounts" in built
        assert not built & {"webhooks", "engine", "batches", "blobs", "routes"}
    finally:
        services.close()


def test_parts_are_built_once_and_shared(tmp_path: Path) -> None:
    services = open_services(Settings(data_dir=tmp_path))
    try:
        assert services.engine.store is services.batch_store
        assert services.batches.engine is services.engine
        assert services.routes.stores is services.marketing_stores
        assert services.webhooks.store is services.engine.webhook_store
        assert services.marketing_stores.clock is services.clock
    finally:
        services.close()
