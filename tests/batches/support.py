"""Helpers for the Batch endpoint suite: submitting, driving, reading archives and tables."""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx2
import jsonschema_rs
from sqlalchemy import func, select

from conveyor.batches.executor import run_group
from conveyor.composition import Services
from conveyor.domain.accounts import Account
from conveyor.domain.steps import FollowUp, Step
from conveyor.reference import marketing_subset
from conveyor.storage.batches import Claim
from conveyor.storage.tables import (
    accounts_table,
    batch_chunks,
    batch_operations,
    batch_results,
    batches,
)
from tests.conftest import LIST_BODY

BATCH_ID = re.compile(r"^[0-9a-f]{10}$")
ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
MEMBER_NAME = re.compile(r"^[0-9a-f]{32}\.json$")
STATUSES = ["pending", "preprocessing", "started", "finalizing", "finished"]
PROBLEM_TYPE = "application/problem+json; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"
BATCH_TABLES = {
    "batches": batches,
    "batch_operations": batch_operations,
    "batch_chunks": batch_chunks,
    "batch_results": batch_results,
}


# --- shapes ----------------------------------------------------------------------------------


@cache
def _validator(pointer: str) -> Any:
    spec = marketing_subset()
    # The whole document rides along so that `#/components/...` references resolve.
    document = {k: v for k, v in spec.items() if k not in ("jsonSchemaDialect", "openapi")}
    return jsonschema_rs.Draft202012Validator({"$ref": pointer, **document}, validate_formats=True)


def shape_errors(body: Any, pointer: str) -> list[str]:
    return [
        f"{list(error.instance_path)}: {error.message}"
        for error in _validator(pointer).iter_errors(body)
    ]


BATCH_SCHEMA = "#/components/schemas/BatchesBatches"
BATCH_LIST_SCHEMA = (
    "#/paths/~1batches/get/responses/200/content/application~1json/schema"  # GET /batches
)
PROBLEM_SCHEMA = "#/components/schemas/AccountExports"


def assert_batch(body: Any, *, api_root: str = "http://testserver/3.0") -> dict[str, Any]:
    """A batch exactly as the spec's `BatchesBatches`, with the rules the spec leaves loose."""
    assert isinstance(body, dict), body
    errors = shape_errors(body, BATCH_SCHEMA)
    assert not errors, errors
    assert set(body) == {
        "id",
        "status",
        "total_operations",
        "finished_operations",
        "errored_operations",
        "submitted_at",
        "completed_at",
        "response_body_url",
        "_links",
    }, body
    assert BATCH_ID.fullmatch(body["id"]), body["id"]
    assert ISO_SECONDS.fullmatch(body["submitted_at"]), body["submitted_at"]
    assert 0 <= body["errored_operations"] <= body["finished_operations"]
    assert body["finished_operations"] <= body["total_operations"]
    if body["status"] == "finished":
        assert body["finished_operations"] == body["total_operations"]
        assert ISO_SECONDS.fullmatch(body["completed_at"]), body["completed_at"]
        assert body["completed_at"] >= body["submitted_at"]
        assert body["response_body_url"].startswith(
            f"{api_root}/batches/{body['id']}-response.tar.gz?"
        ), body["response_body_url"]
    else:
        assert body["completed_at"] == ""
        assert body["response_body_url"] == ""
    links = {link["rel"]: link for link in body["_links"]}
    assert set(links) == {"parent", "self", "delete"}, links
    assert links["self"] | {"method": "GET"} == links["self"]
    assert links["self"]["href"] == f"{api_root}/batches/{body['id']}"
    assert links["delete"]["href"] == f"{api_root}/batches/{body['id']}"
    assert links["delete"]["method"] == "DELETE"
    assert links["parent"]["href"] == f"{api_root}/batches"
    return body


def assert_problem(
    response: httpx2.Response, status: int, title: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_TYPE, response.headers
    body = response.json()
    errors = shape_errors(body, PROBLEM_SCHEMA)
    assert not errors, errors
    assert body["status"] == status
    assert body["instance"] == response.headers["x-request-id"]
    if title is not None:
        assert body["title"] == title, body
    return dict(body)


# --- talking to the API ----------------------------------------------------------------------


def create_list(client: httpx2.Client) -> str:
    response = client.post("/3.0/lists", json=LIST_BODY)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def member_posts(list_id: str, count: int, *, prefix: str = "user") -> list[dict[str, Any]]:
    return [
        {
            "method": "POST",
            "path": f"lists/{list_id}/members",
            "operation_id": f"{prefix}-{i}",
            "body": json.dumps(
                {"email_address": f"{prefix}{i}@example.org", "status": "subscribed"}
            ),
        }
        for i in range(count)
    ]


def submit(client: httpx2.Client, operations: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post("/3.0/batches", json={"operations": operations})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON_TYPE
    body = assert_batch(response.json())
    assert body["status"] == "pending"
    assert body["total_operations"] == len(operations)
    return body


def get_batch(client: httpx2.Client, batch_id: str) -> dict[str, Any]:
    response = client.get(f"/3.0/batches/{batch_id}")
    assert response.status_code == 200, response.text
    return assert_batch(response.json())


def list_members(client: httpx2.Client, list_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/3.0/lists/{list_id}/members", params={"count": 1000})
    assert response.status_code == 200, response.text
    members: list[dict[str, Any]] = response.json()["members"]
    return members


def download(client: httpx2.Client, url: str) -> httpx2.Response:
    """GET a response_body_url with no API key: the signature is the only credential."""
    response = client.get(url, auth=None)
    assert "authorization" not in response.request.headers
    return response


@dataclass(frozen=True)
class Archive:
    names: list[str]
    files: list[list[dict[str, Any]]]

    @property
    def results(self) -> list[dict[str, Any]]:
        return [result for file in self.files for result in file]

    def by_operation_id(self) -> dict[str | None, list[dict[str, Any]]]:
        grouped: dict[str | None, list[dict[str, Any]]] = {}
        for result in self.results:
            grouped.setdefault(result["operation_id"], []).append(result)
        return grouped


def read_archive(content: bytes) -> Archive:
    """Open an archive the way a strict reader would, checking the layout on the way."""
    names: list[str] = []
    files: list[list[dict[str, Any]]] = []
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
        for member in tar.getmembers():
            # No `./` entry, no directories, nothing but plain `<hex>.json` files at the root.
            assert member.isfile(), member.name
            assert MEMBER_NAME.fullmatch(member.name), member.name
            handle = tar.extractfile(member)
            assert handle is not None
            payload = json.loads(handle.read())
            assert isinstance(payload, list), member.name
            for result in payload:
                assert list(result) == ["status_code", "operation_id", "response"], result
                assert isinstance(result["status_code"], int)
                assert result["operation_id"] is None or isinstance(result["operation_id"], str)
                assert isinstance(result["response"], str)
            names.append(member.name)
            files.append(payload)
    assert len(set(names)) == len(names)
    return Archive(names, files)


def fetch_archive(client: httpx2.Client, batch: dict[str, Any]) -> Archive:
    response = download(client, batch["response_body_url"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    return read_archive(response.content)


def assert_counters_match(batch: dict[str, Any], archive: Archive) -> None:
    results = archive.results
    assert batch["total_operations"] == len(results)
    assert batch["finished_operations"] == len(results)
    assert batch["errored_operations"] == sum(
        1 for r in results if not 200 <= r["status_code"] <= 299
    )


def response_of(result: dict[str, Any]) -> Any:
    """The operation's response body, which the archive holds as a JSON string."""
    return json.loads(result["response"]) if result["response"] else None


# --- the database underneath ----------------------------------------------------------------


def account_pk(services: Services, account_id: str) -> int:
    with services.database.read() as conn:
        return int(
            conn.execute(
                select(accounts_table.c.id).where(accounts_table.c.account_id == account_id)
            ).scalar_one()
        )


def batch_rows(services: Services, batch_id: str) -> dict[str, int]:
    """Rows each batch table holds for one batch id."""
    counts: dict[str, int] = {}
    with services.database.read() as conn:
        for name, table in BATCH_TABLES.items():
            column = table.c.id if name == "batches" else table.c.batch_id
            counts[name] = conn.execute(
                select(func.count()).select_from(table).where(column == batch_id)
            ).scalar_one()
    return counts


NO_ROWS = dict.fromkeys(BATCH_TABLES, 0)


def account_batch_ids(services: Services, account_id: str) -> list[str]:
    """Every batch row of the account, including ones still being ingested (invisible)."""
    pk = account_pk(services, account_id)
    with services.database.read() as conn:
        return list(conn.execute(select(batches.c.id).where(batches.c.account_pk == pk)).scalars())


def orphan_rows(services: Services) -> dict[str, int]:
    """Operation, chunk and result rows whose batch row is gone (PostgreSQL is shared)."""
    live = select(batches.c.id)
    counts: dict[str, int] = {}
    with services.database.read() as conn:
        for name, table in BATCH_TABLES.items():
            if name == "batches":
                continue
            counts[name] = conn.execute(
                select(func.count()).select_from(table).where(table.c.batch_id.not_in(live))
            ).scalar_one()
    return counts


def set_chunk_lease(services: Services, batch_id: str, lease_until: float) -> None:
    with services.database.write() as conn:
        conn.execute(
            batch_chunks.update()
            .where(batch_chunks.c.batch_id == batch_id)
            .values(lease_until=lease_until)
        )


# --- driving the engine by hand --------------------------------------------------------------


def drive(
    services: Services,
    batch_id: str,
    *,
    after_step: Callable[[FollowUp], None] | None = None,
    first: Iterable[FollowUp] | None = None,
    max_steps: int = 10_000,
) -> int:
    """Run the engine's steps for a batch in this thread, as the actors would; returns steps."""
    engine = services.engine
    steps = {
        Step.PREPROCESS: engine.preprocess,
        Step.WORK: engine.work,
        Step.FINALIZE: engine.finalize,
        Step.CLEANUP: engine.cleanup,
        Step.DELIVER: services.webhooks.deliver,
    }
    queue = deque(first if first is not None else [FollowUp(Step.PREPROCESS, batch_id)])
    done = 0
    while queue:
        follow_up = queue.popleft()
        queue.extend(steps[follow_up.step](follow_up.target_id))
        done += 1
        if after_step is not None:
            after_step(follow_up)
        assert done < max_steps, "the engine does not converge"
    return done


@dataclass(frozen=True)
class Held:
    """A chunk claimed by hand, with what `work` reads beside the claim."""

    claim: Claim
    account: Account
    api_root: str

    @property
    def seq(self) -> int:
        return self.claim.seq

    @property
    def next_seq(self) -> int:
        return self.claim.next_seq

    @property
    def stop_seq(self) -> int:
        return self.claim.stop_seq

    @property
    def token(self) -> str:
        return self.claim.token


def claim(services: Services, batch_id: str) -> Held | None:
    with services.database.write() as conn:
        store = services.batch_store
        taken = store.claim_chunk(conn, batch_id, services.settings.batches.lease_seconds)
        batch = store.get(conn, batch_id)
        if taken is None or batch is None:
            return None
        account = store.account_of(conn, batch.account_pk)
    return Held(taken, account, batch.api_root)


def run_claimed_group(services: Services, held: Held, start: int, stop: int) -> bool:
    """Run operations [start, stop) under a claim in one transaction, as `work` does."""
    settings = services.settings.batches
    with services.database.writer.connect() as conn:
        transaction = conn.begin()
        outcome = run_group(
            conn, services.batch_store, services.routes, held.account, held.claim, start, stop,
            api_root=held.api_root, page_size=settings.page_size,
            lease_seconds=settings.lease_seconds,
        )  # fmt: skip
        if outcome.committed:
            transaction.commit()
        else:
            transaction.rollback()
    return outcome.committed
