"""What the API edge does to every request before routing, and to every problem answer.

Before routing: a path holding a control character is not found (Starlette's patterns end in
`$`, which also matches before a final newline, so `/3.0/lists/%0A` would otherwise be
served as `/3.0/lists/`); `X-HTTP-Method-Override` turns a POST into the method it names,
as the real service documents, and is a 422 on any other method or with an unknown value.
After: every problem document carries the real service's
`Link: <…/ProblemDetailDocument.json>; rel="describedBy"` header.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.domain import problems
from conveyor.domain.problems import Problem
from conveyor.http.gate import new_request_id
from conveyor.http.responses import problem_response

OVERRIDE_HEADER = b"x-http-method-override"
OVERRIDABLE = ("GET", "POST", "PUT", "PATCH", "DELETE")
PROBLEM_SCHEMA = "/schema/3.0/Definitions/ProblemDetailDocument.json"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def override_method(method: str, override: str | None) -> str:
    """The method a request acts as; `Problem` 422 for an override the API refuses."""
    if override is None:
        return method
    if method != "POST":
        raise problems.invalid_method_override()
    wanted = override.strip().upper()
    if wanted not in OVERRIDABLE:
        raise problems.invalid_method_override(
            f"{problems.METHOD_OVERRIDE_DETAIL} It names GET, POST, PUT, PATCH or DELETE."
        )
    return wanted


class ApiEdge:
    """ASGI middleware around the whole app. `server_root(scope)` is the server's base URL
    as clients reach it (the schema link is re-rooted there, as every `_links` entry is)."""

    def __init__(self, app: ASGIApp, server_root: Callable[[Scope], str]) -> None:
        self.app = app
        self.server_root = server_root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._linking(scope, send)
        try:
            if _CONTROL.search(scope["path"]):
                raise problems.not_found()
            override = _header(scope, OVERRIDE_HEADER)
            method = override_method(scope["method"], override)
        except Problem as problem:
            await problem_response(problem, new_request_id())(scope, receive, send)
            return
        if method != scope["method"]:
            scope = {**scope, "method": method}
        await self.app(scope, receive, send)

    def _linking(self, scope: Scope, send: Send) -> Send:
        async def send_linked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if content_type.startswith(b"application/problem+json"):
                    target = self.server_root(scope) + PROBLEM_SCHEMA
                    headers.append((b"link", f'<{target}>; rel="describedBy"'.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        return send_linked


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None
