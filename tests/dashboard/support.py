"""A browser's view of the dashboard for in-process tests: a cookie jar, forms with their
CSRF token, and the links a page holds."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

import httpx2
from starlette.testclient import TestClient

from conveyor.http.dashboard.session import COOKIE_NAME

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(page: str) -> str:
    found = TOKEN.search(page)
    assert found, "the page holds no form with a CSRF token"
    return html.unescape(found.group(1))


def text_of(page: str) -> str:
    """The page's text, tags removed and whitespace collapsed, for assertions on what a
    reader sees."""
    without_tags = re.sub(r"<[^>]+>", " ", page)
    return " ".join(html.unescape(without_tags).split())


@dataclass
class DashboardUser:
    """One browser: its own cookies, no Authorization header (the dashboard never uses one)."""

    client: TestClient
    last_page: str = ""
    visited: list[str] = field(default_factory=list)

    def get(self, path: str, **kwargs: Any) -> httpx2.Response:
        response = self.client.get(path, follow_redirects=False, **kwargs)
        if response.headers.get("content-type", "").startswith("text/html"):
            self.last_page = response.text
        self.visited.append(path)
        return response

    def page(self, path: str) -> str:
        """A page that must answer 200 (redirects followed)."""
        response = self.client.get(path, follow_redirects=True)
        assert response.status_code == 200, (path, response.status_code, response.text[:500])
        self.last_page = response.text
        return response.text

    def post_form(
        self, path: str, fields: dict[str, str] | None = None, *, token: str | None = None
    ) -> httpx2.Response:
        """Submit a form as the browser would, with the CSRF token of the last page seen
        (or `token`, to try another)."""
        data = dict(fields or {})
        data["csrf_token"] = token if token is not None else csrf_token(self.last_page)
        return self.client.post(path, data=data, follow_redirects=False)

    def sign_in(self, key: str, next_page: str | None = None) -> httpx2.Response:
        self.page("/dashboard/sign-in")
        fields = {"api_key": key}
        if next_page is not None:
            fields["next"] = next_page
        return self.post_form("/dashboard/sign-in", fields)

    @property
    def cookie(self) -> str | None:
        return self.client.cookies.get(COOKIE_NAME)
