"""Shared fixtures: databases (SQLite and PostgreSQL), services, an in-process client."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import delete
from starlette.testclient import TestClient

from conveyor.composition import Services, open_services
from conveyor.domain.clock import OffsetClock
from conveyor.http.app import create_app
from conveyor.runtime.embedded import EmbeddedRuntime, embedded_runtime
from conveyor.settings import Settings
from conveyor.storage.tables import (
    batch_chunks,
    batch_operations,
    batch_results,
    batches,
    idempotency_keys,
    webhook_deliveries,
)
from tests.shape_check import install_shape_check_from_env

POSTGRES_ADMIN_URL = os.environ.get(
    "CONVEYOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# pytest's `record_property` fixture: a name and a value for the test report.
RecordProperty = Callable[[str, object], None]

# A project of its own, run in its own pytest process (tests/emulator/test_plugin_project.py).
collect_ignore = ["emulator_project"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True, scope="session")
def no_conveyor_environment() -> Iterator[None]:
    """Settings read `CONVEYOR_*` variables: the tests start from none, whatever the shell
    that runs them has set (each test that needs one sets it itself)."""
    saved = {name: value for name, value in os.environ.items() if name.startswith("CONVEYOR_")}
    for name in saved:
        if not name.startswith("CONVEYOR_TEST_"):
            del os.environ[name]
    yield
    os.environ.update(saved)


def require_service(name: str, reason: str) -> None:
    """Skip when a service is missing, except under CI=true where that is a failure."""
    message = f"{name} is not available: {reason}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing service fails the run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    import psycopg

    name = f"conveyor_test_{uuid.uuid4().hex[:10]}"
    admin = POSTGRES_ADMIN_URL
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        require_service("PostgreSQL", str(exc).strip())
    base = admin.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """None means the embedded default (SQLite in the data dir)."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, secret="test-secret")


def remove_batches(services: Services) -> None:
    """Start a test with no batch in the database.

    The PostgreSQL database is shared by the whole session, and a runtime's start resumes
    every unfinished batch and webhook delivery it finds, as `conveyor serve` must after a
    restart: another test's leftovers would otherwise run inside this test, in its blob
    folder and on its clock (a dashboard test waited in `runtime.join()` for deliveries the
    API tests had left). Call it before the `runtime` fixture starts.
    """
    if services.database.is_sqlite:
        return  # a fresh database for every test
    with services.database.write() as conn:
        # Other tests' archives live in their own temporary folders: only rows to remove.
        # Their pending webhook deliveries too: a delivery retried with a delay would hold
        # up `runtime.join()` until it came due.
        tables = (
            batch_results,
            batch_operations,
            batch_chunks,
            batches,
            webhook_deliveries,
            idempotency_keys,
        )
        for table in tables:
            conn.execute(delete(table))


@pytest.fixture
def clock() -> OffsetClock:
    """The services' clock: real time, moved forward by a test with `advance`."""
    return OffsetClock()


@pytest.fixture
def services(settings: Settings, clock: OffsetClock) -> Iterator[Services]:
    built = open_services(settings, clock=clock)
    yield built
    built.close()


@dataclass
class ApiUser:
    """One account with a key, and an httpx-style client authenticated as it."""

    account_id: str
    key: str
    client: TestClient

    def __getattr__(self, name: str) -> object:
        return getattr(self.client, name)


def new_account_key(services: Services) -> tuple[str, str]:
    with services.database.write() as conn:
        account_id = services.accounts.create_account(conn)
        return account_id, services.accounts.create_key(conn, account_id, "us1")


@pytest.fixture
def app_client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services), base_url="http://testserver") as client:
        install_shape_check_from_env(client, default="strict")
        yield client


@pytest.fixture
def api(services: Services, app_client: TestClient) -> ApiUser:
    account_id, key = new_account_key(services)
    app_client.auth = httpx2.BasicAuth("anyone", key)
    return ApiUser(account_id, key, app_client)


@pytest.fixture
def other_api(services: Services) -> Iterator[ApiUser]:
    account_id, key = new_account_key(services)
    with TestClient(create_app(services), base_url="http://testserver") as client:
        install_shape_check_from_env(client, default="strict")
        client.auth = httpx2.BasicAuth("x", key)
        yield ApiUser(account_id, key, client)


LIST_BODY: dict[str, Any] = {
    "name": "Newsletter",
    "permission_reminder": "You signed up on our site.",
    "email_type_option": False,
    "contact": {
        "company": "Acme",
        "address1": "1 Main St",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
        "country": "US",
    },
    "campaign_defaults": {
        "from_name": "Acme",
        "from_email": "news@acme.org",
        "subject": "News",
        "language": "en",
    },
}


@pytest.fixture
def list_id(api: ApiUser) -> str:
    response = api.client.post("/3.0/lists", json=LIST_BODY)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


@pytest.fixture
def runtime(services: Services) -> Iterator[EmbeddedRuntime]:
    """The in-process Dramatiq broker, worker and scheduler, as `conveyor serve` runs them.

    Tests wait for background work with `runtime.join()`, never with sleeps.
    """
    started = embedded_runtime(services)
    started.start()
    yield started
    started.stop()


@pytest.fixture
def batch_api(services: Services, runtime: EmbeddedRuntime) -> Iterator[ApiUser]:
    """An account whose client talks to an app wired to the running runtime."""
    account_id, key = new_account_key(services)
    app = create_app(services, runtime.dispatcher.send)
    with TestClient(app, base_url="http://testserver") as client:
        install_shape_check_from_env(client, default="strict")
        client.auth = httpx2.BasicAuth("x", key)
        yield ApiUser(account_id, key, client)


@pytest.fixture
def batch_other_api(services: Services, runtime: EmbeddedRuntime) -> Iterator[ApiUser]:
    account_id, key = new_account_key(services)
    app = create_app(services, runtime.dispatcher.send)
    with TestClient(app, base_url="http://testserver") as client:
        install_shape_check_from_env(client, default="strict")
        client.auth = httpx2.BasicAuth("x", key)
        yield ApiUser(account_id, key, client)
