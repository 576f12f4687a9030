"""The signed `response_body_url`: no API key, tied to one batch, short-lived, minted fresh."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conveyor.composition import Services
from conveyor.domain.clock import FixedClock
from conveyor.domain.signing import build_download_url
from conveyor.runtime.embedded import EmbeddedRuntime
from tests.batches.support import (
    assert_batch,
    assert_problem,
    download,
    fetch_archive,
    get_batch,
    submit,
)
from tests.conftest import ApiUser

GET_LISTS = [{"method": "GET", "path": "lists", "operation_id": "lists"}]


def _finished(client: Any, runtime: EmbeddedRuntime, count: int = 1) -> list[dict[str, Any]]:
    ids = [submit(client, GET_LISTS)["id"] for _ in range(count)]
    runtime.join()
    return [get_batch(client, batch_id) for batch_id in ids]


def _query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def test_url_downloads_without_an_api_key(batch_api: ApiUser, runtime: EmbeddedRuntime) -> None:
    (batch,) = _finished(batch_api.client, runtime)
    url = batch["response_body_url"]
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("http", "testserver")
    assert parts.path == f"/3.0/batches/{batch['id']}-response.tar.gz"
    assert set(_query(url)) == {"expires", "signature"}
    archive = fetch_archive(batch_api.client, batch)
    assert [r["operation_id"] for r in archive.results] == ["lists"]


def test_a_wrong_key_does_not_matter_either(batch_api: ApiUser, runtime: EmbeddedRuntime) -> None:
    (batch,) = _finished(batch_api.client, runtime)
    response = batch_api.client.get(batch["response_body_url"], auth=("x", "0" * 32 + "-us1"))
    assert response.status_code == 200


def test_tampered_signature_is_403(batch_api: ApiUser, runtime: EmbeddedRuntime) -> None:
    (batch,) = _finished(batch_api.client, runtime)
    url = batch["response_body_url"]
    query = _query(url)
    path = urlsplit(url).path
    signature = query["signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    for params in [
        {"expires": query["expires"], "signature": flipped},
        {"expires": str(int(query["expires"]) + 1), "signature": signature},
        {"expires": query["expires"]},
        {"signature": signature},
        {},
        {"expires": "soon", "signature": signature},
        {"expires": query["expires"], "signature": signature[:-1]},
    ]:
        response = batch_api.client.get(path, params=params, auth=None)
        body = assert_problem(response, 403, "Forbidden")
        assert "not valid" in body["detail"]


def test_url_of_another_batch_is_403(batch_api: ApiUser, runtime: EmbeddedRuntime) -> None:
    first, second = _finished(batch_api.client, runtime, count=2)
    query = _query(first["response_body_url"])
    path = urlsplit(second["response_body_url"]).path
    assert_problem(batch_api.client.get(path, params=query, auth=None), 403, "Forbidden")


def test_expired_url_is_403(
    batch_api: ApiUser, runtime: EmbeddedRuntime, services: Services
) -> None:
    (batch,) = _finished(batch_api.client, runtime)
    url = build_download_url(
        "http://testserver", services.secret, batch["id"], time.time() - 3600, 600
    )
    body = assert_problem(download(batch_api.client, url), 403, "Forbidden")
    assert "expired" in body["detail"]
    # The same URL minted just now works: only the time differs.
    fresh = build_download_url("http://testserver", services.secret, batch["id"], time.time())
    assert download(batch_api.client, fresh).status_code == 200


def test_url_signed_with_another_secret_is_403(
    batch_api: ApiUser, runtime: EmbeddedRuntime
) -> None:
    (batch,) = _finished(batch_api.client, runtime)
    url = build_download_url("http://testserver", b"another-secret", batch["id"], time.time())
    assert_problem(download(batch_api.client, url), 403, "Forbidden")


def test_a_fresh_url_on_every_read(
    batch_api: ApiUser,
    runtime: EmbeddedRuntime,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (batch,) = _finished(batch_api.client, runtime)
    client = batch_api.client
    now = time.time()
    # The URL carries whole seconds: a fixed clock, moved between reads, keeps them apart.
    clock = FixedClock(now)
    monkeypatch.setattr(services.batch_store, "clock", clock)
    urls: list[str] = []
    for shift in (0, 100, 100):
        clock.advance(shift)
        urls.append(get_batch(client, batch["id"])["response_body_url"])
        listed = client.get("/3.0/batches").json()["batches"][0]
        assert listed["response_body_url"] == urls[-1]
    expiries = [int(_query(url)["expires"]) for url in urls]
    assert expiries == [int(now) + 600, int(now) + 700, int(now) + 800]
    assert len({_query(url)["signature"] for url in urls}) == 3
    # Each is valid for ten minutes from its own read.
    clock.at = now + 650
    assert download(client, urls[0]).status_code == 403
    assert download(client, urls[1]).status_code == 200


@pytest.mark.settings(public_url="https://mail.example.com/conveyor/")
def test_public_url_changes_the_base(batch_api: ApiUser, runtime: EmbeddedRuntime) -> None:
    client = batch_api.client
    batch_id = submit_public(client)
    runtime.join()
    batch = client.get(f"/3.0/batches/{batch_id}").json()
    assert_batch(batch, api_root="https://mail.example.com/conveyor/3.0")
    url = batch["response_body_url"]
    assert url.startswith(
        f"https://mail.example.com/conveyor/3.0/batches/{batch_id}-response.tar.gz?"
    )
    # This server answers the same path and query (a proxy would strip the prefix).
    parts = urlsplit(url)
    local = parts.path.removeprefix("/conveyor") + "?" + parts.query
    assert download(client, local).status_code == 200


def submit_public(client: Any) -> str:
    response = client.post("/3.0/batches", json={"operations": GET_LISTS})
    assert response.status_code == 200, response.text
    body = assert_batch(response.json(), api_root="https://mail.example.com/conveyor/3.0")
    return str(body["id"])


def test_unfinished_batch_has_no_url_and_no_archive(api: ApiUser, services: Services) -> None:
    batch = submit(api.client, GET_LISTS)
    assert batch["response_body_url"] == ""
    # Even a correctly signed URL finds nothing to serve yet.
    url = build_download_url("http://testserver", services.secret, batch["id"], time.time())
    assert_problem(download(api.client, url), 404)
