"""Helpers for the Batch end-to-end tests: polling, a strict archive reader, member paging.

These talk to a real server over HTTP only; they know nothing of Conveyor's internals, so
they check what any client of the real service would see.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import LIST_BODY
from tests.e2e.server import ServerProcess
from tests.shape_check import install_shape_check_from_env

STATUS_ORDER = ("pending", "preprocessing", "started", "finalizing", "finished")
POLL_INTERVAL = 0.02  # short: the fairness and seed timings include the last poll's wait


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def api_client(server: ServerProcess, timeout: float = 60.0) -> httpx.Client:
    client = httpx.Client(base_url=server.api_url + "/", auth=("e2e", server.key), timeout=timeout)
    install_shape_check_from_env(client)
    return server.owned(client)


def create_list(api: httpx.Client) -> str:
    response = api.post("lists", json=LIST_BODY)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


@dataclass
class Progress:
    """Every status read of one batch, checked against the domain rules as it comes."""

    batch_id: str
    seen: list[dict[str, Any]] = field(default_factory=list)

    def add(self, batch: dict[str, Any]) -> dict[str, Any]:
        assert batch["id"] == self.batch_id
        if self.seen:
            last = self.seen[-1]
            assert STATUS_ORDER.index(batch["status"]) >= STATUS_ORDER.index(last["status"]), (
                f"status moved backwards: {last['status']} -> {batch['status']}"
            )
            for counter in ("finished_operations", "errored_operations"):
                assert batch[counter] >= last[counter], f"{counter} decreased"
        self.seen.append(batch)
        return batch


def wait_finished(
    read: Callable[[], dict[str, Any]],
    *,
    timeout: float,
    progress: Progress | None = None,
    interval: float = POLL_INTERVAL,
) -> dict[str, Any]:
    """Poll `read()` (one status read) until the batch is finished, or fail at `timeout`.

    A remote process cannot be joined, so this is a bounded loop: a short interval so that
    timings stay honest, and an overall deadline so that a stuck batch fails the test.
    """
    deadline = time.monotonic() + timeout
    while True:
        batch = read()
        if progress is not None:
            progress.add(batch)
        if batch["status"] == "finished":
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch not finished after {timeout:g} s: {batch}")
        time.sleep(interval)


def wait_until(
    read: Callable[[], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    *,
    timeout: float,
    interval: float = POLL_INTERVAL,
) -> dict[str, Any]:
    """Poll `read()` until `done(batch)` or the batch is finished; fail at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        batch = read()
        if done(batch) or batch["status"] == "finished":
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached after {timeout:g} s: {batch}")
        time.sleep(interval)


def read_status(api: httpx.Client, batch_id: str) -> dict[str, Any]:
    response = api.get(f"batches/{batch_id}")
    assert response.status_code == 200, response.text
    batch: dict[str, Any] = response.json()
    return batch


@dataclass(frozen=True)
class ArchiveEntry:
    status_code: int
    operation_id: str | None
    response: str  # as stored: the response body as a JSON string

    @property
    def body(self) -> Any:
        return json.loads(self.response) if self.response else None

    @property
    def title(self) -> str | None:
        body = self.body
        return body.get("title") if isinstance(body, dict) else None


def read_archive(data: bytes) -> list[ArchiveEntry]:
    """Parse a results archive, failing on anything a strict client would trip over."""
    entries: list[ArchiveEntry] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = archive.getmembers()
        assert members, "empty archive"
        for member in members:
            # Real Mailchimp tars start with a `./` entry that breaks some readers.
            assert member.isfile(), f"not a plain file: {member.name!r}"
            assert not member.name.startswith(("./", "/")), member.name
            assert member.name.endswith(".json"), member.name
            handle = archive.extractfile(member)
            assert handle is not None
            items = json.load(handle)
            assert isinstance(items, list), member.name
            for item in items:
                assert list(item) == ["status_code", "operation_id", "response"], item
                assert isinstance(item["status_code"], int)
                assert item["operation_id"] is None or isinstance(item["operation_id"], str)
                assert isinstance(item["response"], str)
                entries.append(ArchiveEntry(**item))
    return entries


def download_archive(batch: dict[str, Any]) -> list[ArchiveEntry]:
    """Fetch `response_body_url` with no API key (the signature is the credential)."""
    url = batch["response_body_url"]
    assert url.startswith("http://"), url
    response = httpx.get(url, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    return read_archive(response.content)


def list_members(api: httpx.Client, list_id: str, page: int = 1000) -> list[dict[str, Any]]:
    """Every (non-archived) member of the list, paged with count/offset, fields trimmed."""
    members: list[dict[str, Any]] = []
    fields = "members.email_address,members.web_id,members.merge_fields,total_items"
    offset, total = 0, None
    while total is None or offset < total:
        response = api.get(
            f"lists/{list_id}/members",
            params={"count": page, "offset": offset, "fields": fields},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        if total is not None:
            assert body["total_items"] == total, "the list changed while it was read"
        total = int(body["total_items"])
        members.extend(body["members"])
        offset += page
    assert len(members) == total
    return members


def operation_template(operation: dict[str, Any], marker: str = "IDX") -> str:
    """One operation as JSON with every `marker` turned into `%(i)d`, for fast bodies.

    json.dumps runs once; each of N operations is then a `%` substitution, which keeps a
    100,000-operation body to a fraction of a second to build.
    """
    return json.dumps(operation).replace("%", "%%").replace(marker, "%(i)d")


def operations_body(template: str, count: int, first: int = 0) -> bytes:
    """`{"operations": [...]}` of `count` operations from `template`, indices from `first`."""
    items = ",".join([template % {"i": i} for i in range(first, first + count)])
    return ('{"operations":[' + items + "]}").encode()
