"""Fixtures for the dashboard's in-process tests; the browser tests start real servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from starlette.testclient import TestClient

from conveyor.composition import Services
from conveyor.http.app import create_app
from conveyor.runtime.embedded import EmbeddedRuntime
from conveyor.settings import BatchSettings, Settings
from tests.conftest import new_account_key, remove_batches
from tests.dashboard.support import DashboardUser


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    # The scheduler's sweep stays out of the way: a batch left pending on purpose (no
    # dispatch) must still be pending when the test cancels it.
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret="test-secret",
        batches=BatchSettings(sweep_interval_seconds=3600.0),
    )


@pytest.fixture(autouse=True)
def no_batches_in_flight(services: Services) -> None:
    """Autouse, so it runs before the `runtime` fixture starts (see `remove_batches`)."""
    remove_batches(services)


@dataclass
class Visitor:
    """One account: a browser on the dashboard (not yet signed in) and an API client."""

    key: str
    browser: DashboardUser
    api: TestClient

    def signed_in(self) -> DashboardUser:
        response = self.browser.sign_in(self.key)
        assert response.status_code == 303, response.text
        return self.browser


NewVisitor = Callable[[], Visitor]


@pytest.fixture
def new_visitor(services: Services, runtime: EmbeddedRuntime) -> Iterator[NewVisitor]:
    """`new_visitor()` → a new account's browser and API client, over apps wired to the
    running runtime (each its own app, as two processes would be)."""
    with ExitStack() as stack:

        def make() -> Visitor:
            _, key = new_account_key(services)
            browser = stack.enter_context(
                TestClient(
                    create_app(services, runtime.dispatcher.send), base_url="http://testserver"
                )
            )
            api = stack.enter_context(
                TestClient(
                    create_app(services, runtime.dispatcher.send), base_url="http://testserver"
                )
            )
            api.auth = httpx2.BasicAuth("x", key)
            return Visitor(key, DashboardUser(browser), api)

        yield make


@pytest.fixture
def visitor(new_visitor: NewVisitor) -> Visitor:
    return new_visitor()
