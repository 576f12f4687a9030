"""Fixtures for the in-process API tests (the shared ones live in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx2
import pytest
from starlette.testclient import TestClient

from conveyor.composition import Services
from conveyor.http.app import create_app
from conveyor.runtime.embedded import EmbeddedRuntime
from conveyor.settings import Limits
from tests.api.fidelity import VIAS, BatchCaller, Caller, HttpCaller
from tests.conftest import ApiUser
from tests.shape_check import install_shape_check_from_env

ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(services: Services) -> Iterator[ClientFactory]:
    """A fresh app (its own key cache and limiter) over the same database.

    `make_client(key, limits=Limits(...))`: `limits` replaces the request limits;
    `key=None` gives a client that sends no credentials; `raise_server_exceptions=False`
    shows what a real client would see when an exception escapes the app.
    """
    with ExitStack() as stack:

        def build(
            key: str | None, *, limits: Limits | None = None, raise_server_exceptions: bool = True
        ) -> TestClient:
            settings = services.settings
            if limits is not None:
                settings = settings.model_copy(update={"limits": limits})
            app = create_app(services.with_settings(settings))
            client = stack.enter_context(
                TestClient(
                    app,
                    base_url="http://testserver",
                    raise_server_exceptions=raise_server_exceptions,
                )
            )
            install_shape_check_from_env(client, default="strict")
            if key is not None:
                client.auth = httpx2.BasicAuth("anystring", key)
            return client

        yield build


@pytest.fixture(params=VIAS)
def via(request: pytest.FixtureRequest) -> str:
    """How an operation reaches the route table: "http" or "batch"."""
    return str(request.param)


@pytest.fixture
def call(via: str, batch_api: ApiUser, runtime: EmbeddedRuntime) -> Caller:
    """One operation of `batch_api`'s account, sent the way `via` says."""
    if via == "http":
        return HttpCaller(batch_api.client)
    return BatchCaller(batch_api.client, runtime.join)
