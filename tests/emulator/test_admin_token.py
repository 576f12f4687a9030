"""On a normal server the test controls exist only with an admin token, and need it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
from starlette.testclient import TestClient

from conveyor.composition import Services
from conveyor.http.app import create_app
from conveyor.settings import Settings
from tests.emulator.conftest import KEY, as_key

TOKEN = "s3cret-admin-token"


@pytest.fixture
def normal(services: Services) -> Iterator[TestClient]:
    plain = services.with_settings(services.settings.model_copy(update={"emulate": False}))
    with TestClient(create_app(plain), base_url="http://testserver") as client:
        yield client


@pytest.fixture
def with_token(services: Services) -> Iterator[TestClient]:
    update = {"emulate": False, "admin_token": TOKEN}
    admin = services.with_settings(services.settings.model_copy(update=update))
    with TestClient(create_app(admin), base_url="http://testserver") as client:
        yield client


def test_controls_are_absent_on_a_normal_server(normal: TestClient) -> None:
    assert normal.post("/_conveyor/reset").status_code == 404
    assert normal.get("/_conveyor/requests").status_code == 404
    # And a key nobody created is refused, as on Mailchimp.
    assert normal.get("/3.0/ping", auth=as_key(KEY)).status_code == 401


def test_with_an_admin_token_the_controls_need_it(with_token: TestClient) -> None:
    refused = with_token.get("/_conveyor/requests")
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")
    wrong = with_token.get("/_conveyor/requests", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    admin = httpx2.Headers({"Authorization": f"Bearer {TOKEN}"})
    assert with_token.get("/_conveyor/requests", headers=admin).status_code == 200
    assert with_token.post("/_conveyor/reset", headers=admin).status_code == 200
    # Keys are not adopted outside emulate mode.
    assert with_token.get("/3.0/ping", auth=as_key(KEY)).status_code == 401


def test_the_environment_cannot_turn_emulate_mode_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_EMULATE", "true")
    assert Settings.from_env().emulate is False
    assert Settings.from_env(emulate=True).emulate is True
