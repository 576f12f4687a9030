"""The API's documentation, served by the server itself: `/3.0/openapi.json` (Mailchimp's
subset plus Conveyor's extensions, rooted at this server) and `/docs`, Swagger UI with its
assets from the swagger-ui-bundle package: nothing is fetched from elsewhere, so the page
works on a network without internet, and its Content-Security-Policy says so to browsers.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from swagger_ui_bundle import swagger_ui_path

from conveyor.domain import problems
from conveyor.http import openapi_extensions as ext
from conveyor.http.gate import ApiGate, new_request_id
from conveyor.http.responses import problem_response
from conveyor.reference import marketing_subset

ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
# Relative URLs: the page works wherever a proxy mounts the server.
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Conveyor API</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body>
<main id="swagger-ui"></main>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/init.js"></script>
</body>
</html>
"""
# No validator badge (it would call validator.swagger.io).
INIT = """window.ui = SwaggerUIBundle({
  url: "3.0/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
});
"""


def openapi_document(api_root: str, *, metrics: bool, test_controls: bool) -> dict[str, Any]:
    """The served document: the subset as Mailchimp wrote it, Conveyor's additions marked
    with `x-conveyor-extension`, the servers this server's."""
    document = marketing_subset()
    server_root = api_root.removesuffix("/3.0")
    document["info"] = {
        **document["info"],
        "title": "Conveyor: the Mailchimp Marketing API subset, with Conveyor's extensions",
        "version": version("conveyor"),
    }
    document["servers"] = [{"url": api_root}]
    document["security"] = [{"basicAuth": []}, *document.get("security", [])]
    components = document["components"]
    components["securitySchemes"] = {**components["securitySchemes"], **ext.SECURITY_SCHEMES}
    components["schemas"] = {**components["schemas"], **copy.deepcopy(ext.SCHEMAS)}
    batch = components["schemas"]["BatchesBatches"]
    batch["properties"] = {**batch.get("properties", {}), **ext.BATCH_PROPERTIES}
    submit = document["paths"]["/batches"]["post"]
    submit["parameters"] = [*submit.get("parameters", []), ext.IDEMPOTENCY_KEY]
    document["paths"].update(copy.deepcopy(ext.PATHS))
    outside = {**ext.HEALTH_PATHS}
    if metrics:
        outside.update(ext.METRICS_PATHS)
    if test_controls:
        outside.update(ext.TEST_CONTROL_PATHS)
    for path, item in copy.deepcopy(outside).items():
        document["paths"][path] = {**item, "servers": [{"url": server_root}]}
    document["tags"] = [
        *document.get("tags", []),
        {"name": ext.TAG, "description": "Conveyor's own endpoints beside Mailchimp's."},
    ]
    return document


@dataclass
class ApiDocs:
    gate: ApiGate
    metrics: bool
    test_controls: bool
    _assets: Path = field(default_factory=lambda: Path(swagger_ui_path))

    def routes(self) -> list[Route]:
        return [
            Route("/3.0/openapi.json", self.openapi, methods=["GET"]),
            Route("/docs", self.page, methods=["GET"]),
            Route("/docs/assets/{name}", self.asset, methods=["GET"]),
        ]

    async def openapi(self, request: Request) -> Response:
        document = openapi_document(
            self.gate.api_root(request), metrics=self.metrics, test_controls=self.test_controls
        )
        return JSONResponse(document, headers={"X-Request-Id": new_request_id()})

    async def page(self, request: Request) -> Response:
        return Response(PAGE, media_type="text/html; charset=utf-8", headers=_headers())

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name == "init.js":
            return Response(INIT, media_type=ASSETS["swagger-ui-bundle.js"], headers=_headers())
        if name not in ASSETS:
            return problem_response(problems.not_found(), new_request_id())
        return FileResponse(
            self._assets / name,
            media_type=ASSETS[name],
            headers={**_headers(), "Cache-Control": "public, max-age=86400"},
        )


def _headers() -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}
