"""An emulate-mode server in process: its settings, its runtime, a client without a key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from starlette.testclient import TestClient

from conveyor.composition import Services
from conveyor.http.app import create_app
from conveyor.runtime.embedded import EmbeddedRuntime
from conveyor.settings import BatchSettings, Settings
from tests.conftest import POSTGRES_ADMIN_URL, require_service
from tests.shape_check import install_shape_check_from_env

KEY = "0123456789abcdef0123456789abcdef-us6"
OTHER_KEY = "fedcba9876543210fedcba9876543210-us2"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A database of the test's own: a reset wipes everything in it, and the keys here are
    fixed, so a database shared with other tests would not do."""
    if request.param == "sqlite":
        yield None
        return
    import psycopg

    name = f"conveyor_emulator_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        require_service("PostgreSQL", str(exc).strip())
    yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret="test-secret",
        emulate=True,
        batches=BatchSettings(webhook_first_retry_seconds=0.2, webhook_timeout_seconds=2.0),
    )


@pytest.fixture
def emulator(services: Services, runtime: EmbeddedRuntime) -> Iterator[TestClient]:
    """The emulator's app, wired to the runtime; no key set (each test picks its own)."""
    app = create_app(services, runtime.dispatcher.send)
    with TestClient(app, base_url="http://testserver") as client:
        install_shape_check_from_env(client, default="strict")
        yield client


def as_key(key: str) -> httpx2.BasicAuth:
    return httpx2.BasicAuth("anyone", key)
