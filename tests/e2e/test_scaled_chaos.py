"""Chaos on a scaled-out deployment of real processes (issue 5, "How it is shown").

Two `conveyor api` processes, two `conveyor worker` processes (Dramatiq's own CLI: a master,
a worker process and the Prometheus exposition process each) and one `conveyor scheduler`,
on a fresh PostgreSQL database, a Redis broker (a DB number of its own, flushed) and S3
(moto's server). Then:

- a 50,000-operation batch while worker process groups are SIGKILLed at random moments and
  restarted, five times, and the scheduler once: one result per operation, no effect twice,
  counters equal to the archive;
- an API process SIGKILLed while it ingests a 200,000-operation body: the batch is never
  visible half-stored, and the scheduler's stale-ingest purge removes what was stored;
- the seed walkthrough through the official `mailchimp_marketing` client, each call to
  either API process, with the batch webhook received by a loopback receiver;
- the worker kills again on RabbitMQ (a shared folder for blobs there).

Sweeps are shortened through the environment so that recovery takes seconds. The random
moments come from a seeded generator: the seed is printed, CONVEYOR_E2E_SEED replays it.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import os
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs

import httpx
import mailchimp_marketing
import psycopg
import pytest

from tests.conftest import LIST_BODY, POSTGRES_ADMIN_URL, RecordProperty, require_service
from tests.e2e.batch_support import (
    Progress,
    create_list,
    download_archive,
    list_members,
    md5,
    operation_template,
    read_status,
    wait_finished,
)
from tests.e2e.scaled import (
    Deployment,
    Infrastructure,
    MotoS3,
    flush_redis,
    fresh_database,
    purge_rabbitmq,
)
from tests.webhooks.receiver import running_receiver

pytestmark = pytest.mark.e2e

REDIS_BASE = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379")
RABBITMQ_URL = os.environ.get("CONVEYOR_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
# Redis DB numbers of their own, flushed before use: the broker and the connection limiter.
REDIS_BROKER_DB, REDIS_LIMITER_DB = 12, 11
STALE_INGEST_SECONDS = 8
SHORT_SWEEPS = {
    "CONVEYOR_BATCH_SWEEP_INTERVAL_SECONDS": "1",
    "CONVEYOR_BATCH_SWEEP_IDLE_SECONDS": "3",
    "CONVEYOR_BATCH_LEASE_SECONDS": "5",
    "CONVEYOR_BATCH_STALE_INGEST_SECONDS": str(STALE_INGEST_SECONDS),
    # Chunks of one batch in flight: one per worker thread of the deployment (2 x 2).
    "CONVEYOR_BATCH_WORKER_THREADS": "4",
    "CONVEYOR_LOG_LEVEL": "info",
}
WORKER_KILLS = 5


def seeded_random() -> random.Random:
    seed = int(os.environ.get("CONVEYOR_E2E_SEED") or random.SystemRandom().randrange(2**32))
    print(f"random seed: {seed} (replay with CONVEYOR_E2E_SEED={seed})")
    return random.Random(seed)


def _reachable(host: str, port: int) -> str | None:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        return str(exc)
    return None


# -- deployments, one at a time -----------------------------------------------------------


class Deployments:
    """Starts a deployment per broker on demand; starting one stops the other first, so the
    two never compete for this machine's two cores."""

    def __init__(self, workdir: Path, s3: MotoS3) -> None:
        self.workdir = workdir
        self.s3 = s3
        self.broker: str | None = None
        self._running: ExitStack | None = None
        self._deployment: Deployment | None = None

    def get(self, broker: str) -> Deployment:
        if self.broker == broker and self._deployment is not None:
            return self._deployment
        self.close()
        stack = ExitStack()
        try:
            database_url = stack.enter_context(fresh_database(POSTGRES_ADMIN_URL))
            if broker == "redis":
                broker_url = f"{REDIS_BASE}/{REDIS_BROKER_DB}"
                limiter_url = f"{REDIS_BASE}/{REDIS_LIMITER_DB}"
                flush_redis(broker_url)
                flush_redis(limiter_url)
                infra = Infrastructure(
                    database_url,
                    broker_url,
                    f"s3://{self.s3.bucket}/{broker}",
                    s3_endpoint=self.s3.endpoint,
                    limiter_url=limiter_url,
                )
            else:
                purge_rabbitmq(RABBITMQ_URL)
                shared = self.workdir / f"{broker}-shared-blobs"
                infra = Infrastructure(
                    database_url, RABBITMQ_URL, shared.as_uri(), limiter_url="database"
                )
            deployment = Deployment(self.workdir / broker, infra, env=SHORT_SWEEPS)
            started = time.monotonic()
            stack.enter_context(deployment)
            print(f"{broker} deployment up in {time.monotonic() - started:.1f} s")
        except BaseException:
            stack.close()
            raise
        self.broker, self._running, self._deployment = broker, stack, deployment
        return deployment

    def close(self) -> None:
        if self._running is not None:
            running, self._running, self._deployment, self.broker = self._running, None, None, None
            running.close()


@pytest.fixture(scope="module")
def deployments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployments]:
    import psycopg

    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        require_service("PostgreSQL", str(exc).strip())
    workdir = tmp_path_factory.mktemp("scaled")
    s3 = MotoS3(workdir / "s3").start()
    pool = Deployments(workdir, s3)
    try:
        yield pool
    finally:
        try:
            pool.close()
        finally:
            s3.close()


@pytest.fixture
def redis_deployment(deployments: Deployments) -> Deployment:
    problem = _reachable("127.0.0.1", int(REDIS_BASE.rsplit(":", 1)[1]))
    if problem:
        require_service("Redis", problem)
    return deployments.get("redis")


@pytest.fixture
def rabbitmq_deployment(deployments: Deployments) -> Deployment:
    problem = _reachable("127.0.0.1", 5672)
    if problem:
        require_service("RabbitMQ", problem)
    return deployments.get("rabbitmq")


def database_url(deployment: Deployment) -> str:
    return deployment.infra.database_url


# -- a batch whose every outcome is known in advance ---------------------------------------


@dataclass(frozen=True)
class Expected:
    kind: str
    email: str
    status_code: int
    title: str | None = None  # the problem title of a failure


@dataclass
class Plan:
    """A batch's body and the result each of its operations must give, in any order."""

    body: bytes
    expected: dict[str, Expected]
    old: list[str]

    def emails(self, kind: str) -> dict[str, str]:
        """email → operation_id of the operations of one kind."""
        return {e.email: oid for oid, e in self.expected.items() if e.kind == kind}


def plan_batch(list_id: str, old: list[str], total: int, rng: random.Random) -> Plan:
    """`total` member operations (POST, PUT, PATCH; a tenth of them invalid), shuffled.

    Chunks run in parallel and in any order, so each operation's outcome must not depend on
    the others: PATCHes and PUTs of existing members touch disjoint addresses that were on
    the list before the batch, and the new addresses of POSTs and upserting PUTs are
    disjoint too. `old` holds the members added before the batch (at least 15% of total).
    """
    members = f"lists/{list_id}/members"
    tenth = total // 10
    kinds: list[tuple[str, str, int, str | None]] = []  # kind, method, status, title
    counts = {
        "post_new": 0,  # the rest, below
        "put_new": tenth,
        "put_old": tenth // 2,
        "patch_old": tenth,
        "post_old": tenth // 4,
        "post_invalid": tenth // 4,
        "patch_missing": tenth // 4,
        "bad_json": tenth // 4,
    }
    counts["post_new"] = total - sum(v for k, v in counts.items() if k != "post_new")
    assert len(old) >= counts["put_old"] + counts["patch_old"]
    outcome = {
        "post_new": ("POST", 200, None),
        "put_new": ("PUT", 200, None),
        "put_old": ("PUT", 200, None),
        "patch_old": ("PATCH", 200, None),
        "post_old": ("POST", 400, "Member Exists"),
        "post_invalid": ("POST", 400, "Invalid Resource"),
        "patch_missing": ("PATCH", 404, "Resource Not Found"),
        "bad_json": ("POST", 400, "JSON Parse Exception"),
    }
    for kind, count in counts.items():
        method, status, title = outcome[kind]
        kinds.extend([(kind, method, status, title)] * count)
    rng.shuffle(kinds)

    put_old = iter(old[: counts["put_old"]])
    patch_old = iter(old[counts["put_old"] : counts["put_old"] + counts["patch_old"]])
    post_old = iter(old[: counts["post_old"]])
    items: list[str] = []
    expected: dict[str, Expected] = {}
    for seq, (kind, method, status, title) in enumerate(kinds):
        path = members
        if kind == "post_new":
            email = f"new{seq}@example.org"
            body: Any = {"email_address": email, "status": "subscribed"}
        elif kind == "put_new":
            email = f"upsert{seq}@example.org"
            body = {"email_address": email, "status_if_new": "subscribed"}
            path = f"{members}/{md5(email)}"
        elif kind == "put_old":
            email = next(put_old)
            body = {"email_address": email, "status_if_new": "subscribed",
                    "merge_fields": {"FNAME": "Put"}}  # fmt: skip
            path = f"{members}/{md5(email)}"
        elif kind == "patch_old":
            email = next(patch_old)
            body = {"merge_fields": {"LNAME": "Patched"}}
            path = f"{members}/{md5(email)}"
        elif kind == "post_old":
            email = next(post_old)
            body = {"email_address": email, "status": "subscribed"}
        elif kind == "post_invalid":
            email = f"invalid{seq}.example.org"
            body = {"email_address": email, "status": "subscribed"}
        elif kind == "patch_missing":
            email = f"missing{seq}@example.org"
            body = {"vip": True}
            path = f"{members}/{md5(email)}"
        else:  # bad_json: the body is cut short
            email = f"unparsed{seq}@example.org"
            body = '{"email_address": "' + email + '", '
        operation_id = f"{kind}-{seq}"
        text = body if isinstance(body, str) else json.dumps(body)
        items.append(
            json.dumps({"method": method, "path": path, "operation_id": operation_id, "body": text})
        )
        expected[operation_id] = Expected(kind, email, status, title)
    return Plan(('{"operations":[' + ",".join(items) + "]}").encode(), expected, old)


def add_old_members(api: httpx.Client, list_id: str, count: int) -> list[str]:
    """`count` members on the list before the batch, with the direct batch-subscribe."""
    emails = [f"old{k}@example.org" for k in range(count)]
    for start in range(0, count, 500):
        page = [{"email_address": e, "status": "subscribed"} for e in emails[start : start + 500]]
        response = api.post(f"lists/{list_id}", json={"members": page})
        assert response.status_code == 200, response.text
        assert response.json()["total_created"] == len(page)
    return emails


# -- kills while a batch runs ---------------------------------------------------------------


@dataclass
class Kill:
    role: str
    at_seconds: float
    status: str
    finished_operations: int


@dataclass
class ChaosRun:
    kills: list[Kill] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return ", ".join(
            f"{k.role}@{k.at_seconds:.1f}s({k.status},{k.finished_operations})" for k in self.kills
        )


def kill_workers_while_running(
    deployment: Deployment,
    apis: list[httpx.Client],
    progress: Progress,
    rng: random.Random,
    *,
    worker_kills: int,
    scheduler_kills: int,
    timeout: float,
) -> ChaosRun:
    """SIGKILL worker process groups (and the scheduler) at random moments of a running batch.

    A victim is a worker that has been up for a random while (0.3-1.5 s: a worker still
    booting has no work to lose); it is restarted at once without waiting, so both workers
    may be down together for a while. The scheduler dies right after a randomly chosen
    worker kill. Status reads alternate between the API processes. Returns when every kill
    has landed on an unfinished batch, or when the batch finished first (the caller checks).
    """
    run = ChaosRun()
    scheduler_after = set(rng.sample(range(1, worker_kills + 1), scheduler_kills))
    started = time.monotonic()
    deadline = started + timeout
    up_since: dict[str, float] = {}
    uptime = rng.uniform(0.3, 1.5)
    killed = 0
    while killed < worker_kills:
        if time.monotonic() > deadline:
            raise AssertionError(f"kills not done after {timeout:g} s: {run.summary()}")
        time.sleep(rng.uniform(0.1, 0.5))
        now = time.monotonic()
        for worker in deployment.workers:
            if worker.name not in up_since and worker.is_ready():
                up_since[worker.name] = now
        batch = progress.add(read_status(apis[len(progress.seen) % len(apis)], progress.batch_id))
        if batch["status"] == "finished":
            break
        ripe = [w for w in deployment.workers if now - up_since.get(w.name, now) >= uptime]
        if not ripe or batch["status"] not in ("started", "preprocessing", "pending"):
            continue
        victim = rng.choice(ripe)
        victim.kill()
        killed += 1
        at = time.monotonic() - started
        run.kills.append(Kill(victim.name, at, batch["status"], batch["finished_operations"]))
        victim.start(wait=False)
        del up_since[victim.name]
        uptime = rng.uniform(0.3, 1.5)
        if killed in scheduler_after:
            deployment.scheduler.kill()
            run.kills.append(Kill("scheduler", at, batch["status"], batch["finished_operations"]))
            deployment.scheduler.start(wait=False)
    run.seconds = time.monotonic() - started
    return run


def wait_all_up(deployment: Deployment, timeout: float = 90.0) -> None:
    for role in deployment.roles:
        role.wait_ready(timeout)


def check_exactly_once(
    apis: list[httpx.Client], list_id: str, final: dict[str, Any], plan: Plan
) -> None:
    """The Batch issue's checks, from what a client sees (and the archive in S3 or a folder)."""
    expected = plan.expected
    entries = download_archive(final)
    total = len(expected)

    # Exactly one result per operation.
    counts = Counter(entry.operation_id for entry in entries)
    assert len(entries) == total
    assert set(counts) == set(expected)
    assert max(counts.values()) == 1

    # Every result is the one its operation must give, whatever order or process it ran in.
    wrong = [
        (entry.operation_id, entry.status_code, entry.title)
        for entry in entries
        if entry.operation_id is not None
        and (entry.status_code, entry.title if entry.status_code >= 300 else None)
        != (expected[entry.operation_id].status_code, expected[entry.operation_id].title)
    ]
    assert not wrong, f"{len(wrong)} unexpected results, e.g. {wrong[:5]}"
    # No Member Exists for an address that was new before the batch: a group that ran twice
    # (after a kill) would say exactly that.
    old = set(plan.old)
    exists = [e for e in entries if e.title == "Member Exists"]
    assert len(exists) == sum(1 for e in expected.values() if e.kind == "post_old")
    assert all(e.operation_id and expected[e.operation_id].email in old for e in exists)

    # The counters equal the archive's contents.
    errored = sum(1 for entry in entries if not 200 <= entry.status_code < 300)
    assert final["total_operations"] == final["finished_operations"] == total
    assert final["errored_operations"] == errored
    assert errored == sum(1 for e in expected.values() if e.status_code >= 300)

    # Each good POST's member exists once, and is the member its result describes.
    members = read_all_members(apis, list_id)
    emails = Counter(member["email_address"] for member in members)
    assert max(emails.values()) == 1
    posted = plan.emails("post_new")
    assert set(emails) == old | set(posted) | set(plan.emails("put_new"))
    by_id = {entry.operation_id: entry for entry in entries}
    web_ids = {member["email_address"]: member["web_id"] for member in members}
    mismatched = [e for e, oid in posted.items() if by_id[oid].body["web_id"] != web_ids[e]]
    assert not mismatched, mismatched[:5]
    # The updates took effect too.
    merge = {m["email_address"]: m["merge_fields"] for m in members}
    assert all(merge[email]["FNAME"] == "Put" for email in plan.emails("put_old"))
    assert all(merge[email]["LNAME"] == "Patched" for email in plan.emails("patch_old"))


def read_all_members(apis: list[httpx.Client], list_id: str) -> list[dict[str, Any]]:
    """Every member of the list, pages read in parallel through every API process."""
    fields = "members.email_address,members.web_id,members.merge_fields,total_items"

    def page(offset: int) -> dict[str, Any]:
        api = apis[offset // 1000 % len(apis)]
        params: dict[str, Any] = {"count": 1000, "offset": offset, "fields": fields}
        response = api.get(f"lists/{list_id}/members", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    first = page(0)
    total = int(first["total_items"])
    with ThreadPoolExecutor(max_workers=4) as pool:
        rest = list(pool.map(page, range(1000, total, 1000)))
    members: list[dict[str, Any]] = list(first["members"])
    for body in rest:
        assert body["total_items"] == total, "the list changed while it was read"
        members.extend(body["members"])
    assert len(members) == total
    return members


def leftover_rows(deployment: Deployment, batch_id: str) -> tuple[int, int]:
    """Operation and result rows of a batch still in the database."""
    counts: list[int] = []
    with psycopg.connect(database_url(deployment)) as conn:
        for table in ("batch_operations", "batch_results"):
            query = f"SELECT count(*) FROM {table} WHERE batch_id = %s"
            row = conn.execute(query, (batch_id,)).fetchone()
            counts.append(int(row[0]) if row else -1)
    return counts[0], counts[1]


def chaos_batch(
    deployment: Deployment,
    *,
    total: int,
    old_members: int,
    scheduler_kills: int,
    finish_timeout: float,
    record_property: RecordProperty,
    label: str,
) -> None:
    rng = seeded_random()
    wait_all_up(deployment)  # an earlier test may have left a role restarting
    key = deployment.new_key()
    apis = [deployment.client(index, key) for index in range(len(deployment.apis))]
    list_id = create_list(apis[0])
    old = add_old_members(apis[1], list_id, old_members)
    plan = plan_batch(list_id, old, total, rng)

    started = time.monotonic()
    submitted = apis[0].post(
        "batches", content=plan.body, headers={"Content-Type": "application/json"}
    )
    assert submitted.status_code == 200, submitted.text
    submit_seconds = time.monotonic() - started
    batch_id = submitted.json()["id"]
    progress = Progress(batch_id)
    progress.add(submitted.json())

    run = kill_workers_while_running(
        deployment, apis, progress, rng,
        worker_kills=WORKER_KILLS, scheduler_kills=scheduler_kills, timeout=finish_timeout,
    )  # fmt: skip
    print(f"{label}: {len(run.kills)} SIGKILLs: {run.summary()}")
    worker_kills = sum(k.role.startswith("worker") for k in run.kills)
    assert worker_kills == WORKER_KILLS, (
        f"the batch finished before {WORKER_KILLS} worker kills landed: {run.summary()}"
    )
    assert sum(k.role == "scheduler" for k in run.kills) == scheduler_kills

    def read() -> dict[str, Any]:
        return read_status(apis[len(progress.seen) % len(apis)], batch_id)

    try:
        final = wait_finished(read, timeout=finish_timeout, progress=progress, interval=0.1)
    except AssertionError:
        print(deployment.logs())
        raise
    elapsed = time.monotonic() - started
    print(
        f"{label}: {total:,} operations: submitted in {submit_seconds:.1f} s, finished "
        f"{elapsed:.1f} s after the submit, through {len(run.kills)} kills"
    )
    record_property(f"{label}_seconds", round(elapsed, 1))
    record_property(f"{label}_kills", run.summary())

    checks_started = time.monotonic()
    check_exactly_once(apis, list_id, final, plan)
    # The rows stay for the operations view until the batch goes, one per operation and one
    # per result whatever the kills did; a DELETE takes them all.
    assert leftover_rows(deployment, batch_id) == (total, final["finished_operations"])
    assert apis[0].delete(f"batches/{batch_id}").status_code == 204
    assert leftover_rows(deployment, batch_id) == (0, 0)
    print(f"{label}: exactly-once checks in {time.monotonic() - checks_started:.1f} s")
    for api in apis:
        api.close()


def test_worker_and_scheduler_kills_on_redis(
    redis_deployment: Deployment, record_property: RecordProperty
) -> None:
    chaos_batch(
        redis_deployment,
        total=50_000,
        old_members=8_000,
        scheduler_kills=1,
        finish_timeout=300,
        record_property=record_property,
        label="redis",
    )


# -- an API process killed while it ingests --------------------------------------------------

INGEST_OPERATIONS = 200_000
INGEST_SLICE = 2_000  # operations per streamed piece


def ingest_state(deployment: Deployment) -> tuple[int, int]:
    """(uploads in progress, operation rows they stored), read beside the deployment."""
    with psycopg.connect(database_url(deployment)) as conn:
        batches = conn.execute("SELECT id FROM batches WHERE status = 'ingesting'").fetchall()
        ids = [row[0] for row in batches]
        stored = conn.execute(
            "SELECT count(*) FROM batch_operations WHERE batch_id = ANY(%s)", (ids,)
        ).fetchone()
    return len(ids), int(stored[0]) if stored else 0


def test_api_killed_while_ingesting_leaves_nothing_half_stored(
    redis_deployment: Deployment,
) -> None:
    deployment = redis_deployment
    rng = seeded_random()
    wait_all_up(deployment)
    key = deployment.new_key()
    victim, witness = deployment.client(0, key, timeout=120), deployment.client(1, key)
    list_id = create_list(witness)
    template = operation_template(
        {
            "method": "POST",
            "path": f"lists/{list_id}/members",
            "operation_id": "ingest-IDX",
            "body": json.dumps({"email_address": "ingestIDX@example.org", "status": "subscribed"}),
        }
    )
    kill_at = rng.randrange(10, INGEST_OPERATIONS // INGEST_SLICE - 10) * INGEST_SLICE

    # While the body streams in, the other API process is asked for the account's batches
    # again and again: a batch may only ever appear whole.
    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            listed = witness.get("batches", params={"count": 1000}).json()
            seen.extend(listed["batches"])
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    stored_at_kill: list[tuple[int, int]] = []

    def slow_body() -> Iterator[bytes]:
        yield b'{"operations":['
        for first in range(0, INGEST_OPERATIONS, INGEST_SLICE):
            items = ",".join([template % {"i": i} for i in range(first, first + INGEST_SLICE)])
            yield (items if first == 0 else "," + items).encode()
            if first == kill_at:
                # Mid-body: wait until the server has stored a page (it may lag behind what
                # was sent), so that the kill lands on a partly stored upload.
                deadline = time.monotonic() + 30
                while ingest_state(deployment)[1] == 0 and time.monotonic() < deadline:
                    time.sleep(0.02)
                stored_at_kill.append(ingest_state(deployment))
                deployment.apis[0].kill()
            time.sleep(0.005)  # slow enough that the server stores pages as it goes
        yield b"]}"

    watcher.start()
    try:
        with pytest.raises(httpx.TransportError):
            victim.post(
                "batches", content=slow_body(), headers={"Content-Type": "application/json"}
            )
    finally:
        stop.set()
        watcher.join(10)
    killed = time.monotonic()
    sent = kill_at + INGEST_SLICE
    print(f"API killed after {sent:,} of {INGEST_OPERATIONS:,} operations were sent; stored "
          f"then (batches, operations): {stored_at_kill}")  # fmt: skip
    [(ingesting, stored)] = stored_at_kill
    # The upload was under way: its pages were being stored, invisible to clients.
    assert ingesting == 1 and 0 < stored <= sent, stored_at_kill
    assert all(b["total_operations"] == INGEST_OPERATIONS for b in seen), seen[:3]
    assert not seen

    # The scheduler discards the upload once it has been idle for the stale-ingest time.
    deadline = killed + STALE_INGEST_SECONDS + 30
    while ingest_state(deployment) != (0, 0):
        assert time.monotonic() < deadline, f"partial upload still stored: {deployment.logs()}"
        time.sleep(0.2)
    purged_after = time.monotonic() - killed
    print(f"partial upload purged {purged_after:.1f} s after the kill")

    deployment.apis[0].start()
    for index in range(len(deployment.apis)):
        with deployment.client(index, key) as api:
            listed = api.get("batches", params={"count": 1000}).json()
            assert listed["total_items"] == 0, listed
    # No operation of the cut body ran, and the restarted process takes and runs new work.
    assert witness.get(f"lists/{list_id}").json()["stats"]["member_count"] == 0
    with deployment.client(0, key) as api:
        small = {"operations": [{"method": "GET", "path": "ping", "operation_id": "after"}]}
        batch_id = api.post("batches", json=small).json()["id"]
        done = wait_finished(lambda: read_status(api, batch_id), timeout=60, interval=0.05)
    assert (done["finished_operations"], done["errored_operations"]) == (1, 0)
    victim.close()
    witness.close()


# -- the seed walkthrough through the official client --------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed_walkthrough.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seed_walkthrough_scaled", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


def marketing_client(api_url: str, key: str) -> Any:
    client = mailchimp_marketing.Client()
    client.set_config({"api_key": key, "server": "us1"})
    client.api_client.host = api_url
    return client


def test_seed_walkthrough_with_the_official_client_through_either_api(
    redis_deployment: Deployment, record_property: RecordProperty
) -> None:
    deployment = redis_deployment
    wait_all_up(deployment)
    example = load_example()
    key = deployment.new_key()
    clients = [marketing_client(deployment.api_url(i), key) for i in range(len(deployment.apis))]
    first, second = clients[0], clients[-1]

    with running_receiver() as receiver:
        hook = second.batchWebhooks.create({"url": receiver.url})
        list_id = first.lists.create_list(LIST_BODY)["id"]
        existing = "already.there@example.org"
        second.lists.add_list_member(list_id, {"email_address": existing, "status": "subscribed"})
        operations = example.seed_operations(list_id, 1_000, "scaled", existing)

        started, submitted_at = time.monotonic(), time.time()
        batch = first.batches.start({"operations": operations})
        progress = Progress(batch["id"])
        progress.add(batch)
        reads = iter(range(10**9))
        final = wait_finished(
            lambda: clients[next(reads) % len(clients)].batches.status(batch["id"]),
            timeout=120,
            progress=progress,
        )
        # With no API key: the signed URL is the credential.
        entries = download_archive(final)
        seconds = time.monotonic() - started
        [post] = receiver.wait_for_posts(1, timeout=60)
        hook_seconds = post.at - submitted_at
    print(f"seed through two API processes: finished and downloaded in {seconds:.2f} s; "
          f"webhook {hook_seconds:.2f} s after the submit")  # fmt: skip
    record_property("scaled_seed_seconds", round(seconds, 2))

    assert (final["total_operations"], final["finished_operations"]) == (1003, 1003)
    assert final["errored_operations"] == 3
    counts = Counter(entry.operation_id for entry in entries)
    assert counts == Counter(op["operation_id"] for op in operations)
    web_ids = {e.operation_id: e.body["web_id"] for e in entries if e.status_code == 200}
    failures = {e.operation_id: e.title for e in entries if e.status_code != 200}
    assert len(web_ids) == 1000
    assert failures["invalid-email"] == "Invalid Resource"
    assert failures["already-a-member"] == "Member Exists"
    assert len(set(failures) & {"add-0000", "duplicate-of-add-0000"}) == 1
    emails = {op["operation_id"]: json.loads(op["body"])["email_address"] for op in operations}
    with deployment.client(len(deployment.apis) - 1, key) as api:
        members = {m["email_address"]: m["web_id"] for m in list_members(api, list_id)}
    assert len(members) == 1001
    assert all(members[emails[oid]] == web_id for oid, web_id in web_ids.items())

    # The webhook, as Mailchimp sends it, signed with the hook's secret, from a worker.
    form = {k: v[0] for k, v in parse_qs(post.body.decode()).items()}
    assert form["type"] == "batch_operation_completed"
    assert form["data[id]"] == final["id"]
    assert form["data[status]"] == "finished"
    assert form["data[finished_operations]"] == "1003"
    assert form["data[errored_operations]"] == "3"
    timestamp, signature = (part.split("=", 1)[1] for part in
                            post.headers["X-Mailchimp-Signature"].split(","))  # fmt: skip
    expected = hmac.new(
        hook["secret"].encode(), f"{timestamp}.".encode() + post.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(signature, expected)
    assert httpx.get(form["data[response_body_url]"], timeout=60).status_code == 200


# -- RabbitMQ --------------------------------------------------------------------------------


def test_worker_kills_on_rabbitmq(
    rabbitmq_deployment: Deployment, record_property: RecordProperty
) -> None:
    chaos_batch(
        rabbitmq_deployment,
        total=60_000,
        old_members=10_000,
        scheduler_kills=0,
        finish_timeout=240,
        record_property=record_property,
        label="rabbitmq",
    )
