"""The served OpenAPI document and the /docs page: valid, complete, and local."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from starlette.routing import Route
from starlette.testclient import TestClient

from conveyor.composition import Services, open_services
from conveyor.http.app import create_app
from conveyor.reference import marketing_subset
from conveyor.settings import Settings


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Services, TestClient]]:
    settings = Settings(data_dir=tmp_path / "data", secret="test-secret", admin_token="a" * 24)
    services = open_services(settings)
    try:
        with TestClient(create_app(services), base_url="http://testserver") as client:
            yield services, client
    finally:
        services.close()


def _document(client: TestClient) -> dict[str, Any]:
    response = client.get("/3.0/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    return document


def _errors(document: dict[str, Any]) -> list[str]:
    return sorted(str(error.message) for error in OpenAPIV31SpecValidator(document).iter_errors())


def test_the_document_is_valid_openapi(served: tuple[Services, TestClient]) -> None:
    document = _document(served[1])
    assert document["openapi"].startswith("3.1")
    # Mailchimp's own file has two known errors (reference/SOURCE.md); ours adds none.
    assert _errors(document) == _errors(marketing_subset())
    assert len(_errors(marketing_subset())) <= 2


def test_it_holds_the_extensions_and_this_server(served: tuple[Services, TestClient]) -> None:
    document = _document(served[1])
    assert document["servers"] == [{"url": "http://testserver/3.0"}]
    paths = document["paths"]
    for path, method in [
        ("/batches/{batch_id}/operations", "get"),
        ("/batches/{batch_id}/results.ndjson", "get"),
        ("/batches/{batch_id}/retry", "post"),
        ("/batches/{batch_id}/cancel", "post"),
        ("/batches/{batch_id}/events", "get"),
        ("/batch-webhooks/{batch_webhook_id}/deliveries", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/_conveyor/faults", "post"),
    ]:
        assert paths[path][method]["x-conveyor-extension"] is True, path
    assert paths["/healthz"]["servers"] == [{"url": "http://testserver"}]
    submit = paths["/batches"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in submit)
    batch = document["components"]["schemas"]["BatchesBatches"]["properties"]
    assert {"canceled_at", "retry_of"} <= set(batch)
    # Mailchimp's operations are there as Mailchimp wrote them.
    subset = marketing_subset()
    assert paths["/lists/{list_id}/members"] == subset["paths"]["/lists/{list_id}/members"]


def test_every_served_operation_is_documented(served: tuple[Services, TestClient]) -> None:
    services, client = served
    # Placeholder names are each side's own (`{webhook_id}` serves `{batch_webhook_id}`).
    paths = {_shape(path): item for path, item in _document(client)["paths"].items()}
    app = create_app(services)
    missing = []
    for route in app.routes:
        assert isinstance(route, Route)
        path = route.path
        # Pages for people (the docs, the dashboard) are not operations of the API.
        if "{path:path}" in path or path == "/3.0" or path.startswith(("/docs", "/dashboard")):
            continue
        key = _shape(path.removeprefix("/3.0").rstrip("/") if path.startswith("/3.0/") else path)
        for method in route.methods or ():
            if method != "HEAD" and method.lower() not in paths.get(key, {}):
                missing.append((method, path))
    for pattern, methods in services.routes.patterns():
        key = _shape(pattern.rstrip("/") or "/")
        missing += [(m, pattern) for m in methods if m.lower() not in paths.get(key, {})]
    assert not missing


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_test_controls_only_when_served(tmp_path: Path) -> None:
    services = open_services(
        Settings(data_dir=tmp_path / "data", secret="test-secret", metrics_enabled=False)
    )
    try:
        with TestClient(create_app(services), base_url="http://testserver") as client:
            paths = _document(client)["paths"]
    finally:
        services.close()
    assert not [path for path in paths if path.startswith("/_conveyor")]
    assert "/metrics" not in paths


EXTERNAL = re.compile(r"(https?:)?//[^\s\"')]+", re.IGNORECASE)


def test_docs_page_loads_only_local_assets(served: tuple[Services, TestClient]) -> None:
    client = served[1]
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "http" not in csp
    assert not EXTERNAL.findall(page.text)
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert set(referenced) == {
        "docs/assets/swagger-ui.css",
        "docs/assets/favicon-32x32.png",
        "docs/assets/swagger-ui-bundle.js",
        "docs/assets/init.js",
    }
    for asset in referenced:
        response = client.get("/" + asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 0
    init = client.get("/docs/assets/init.js").text
    assert not EXTERNAL.findall(init)
    assert "validatorUrl: null" in init
    assert '"3.0/openapi.json"' in init
    assert client.get("/docs/assets/..%2Fsecret").status_code == 404
    assert client.get("/docs/assets/index.html").status_code == 404
