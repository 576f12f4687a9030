"""`/healthz` and `/readyz`: unauthenticated, and /readyz names the dependency that fails."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from conveyor.composition import Services
from conveyor.http.app import create_app
from conveyor.runtime.broker import broker_check, create_broker
from conveyor.storage.blobs import LocalBlobStore


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def plain(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services), base_url="http://testserver") as client:
        yield client


def test_healthz_needs_no_key(plain: TestClient) -> None:
    response = plain.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert plain.head("/healthz").status_code == 200


def test_readyz_checks_the_database_and_the_blob_store(plain: TestClient) -> None:
    response = plain.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"blobs": "ok", "database": "ok"}}


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_readyz_is_503_naming_an_unreachable_broker(services: Services, scheme: str) -> None:
    broker = create_broker(f"{scheme}://127.0.0.1:{_closed_port()}/")
    app = create_app(services, readiness={"broker": broker_check(broker)})
    with TestClient(app, base_url="http://testserver") as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] != "ok"
    assert "Connection" in body["checks"]["broker"]


def test_readyz_is_503_when_the_blob_store_cannot_be_written(
    services: Services, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the archives should go")
    services.__dict__["blobs"] = LocalBlobStore(blocked / "blobs")
    with TestClient(create_app(services), base_url="http://testserver") as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["blobs"].startswith(("FileExistsError", "NotADirectory"))


def test_readyz_of_a_live_broker_is_ok(services: Services) -> None:
    from tests.conftest import require_service

    broker = create_broker("redis://127.0.0.1:6379/0")
    check = broker_check(broker)
    try:
        check()
    except Exception as exc:
        require_service("Redis", str(exc))
    app = create_app(services, readiness={"broker": check})
    with TestClient(app, base_url="http://testserver") as client:
        assert client.get("/readyz").json()["checks"]["broker"] == "ok"
    broker.close()
