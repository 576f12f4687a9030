"""The stacks of the contract suite and the services they run on.

Every test asking for `stack` runs once per supported combination (`stack.SPECS`):

- sqlite-stub-local: SQLite, Dramatiq's in-process broker and worker, blobs in the data dir:
  the one-process default (`conveyor serve`).
- postgres-redis-s3: PostgreSQL, a Redis broker, S3 (moto's server mode, started here), the
  connection limit counted in Redis.
- postgres-rabbitmq-folder: PostgreSQL, a RabbitMQ broker, a shared folder (`file://`), the
  connection limit counted in PostgreSQL.

Isolation: a fresh PostgreSQL database per test (copied from a migrated template), a Redis
database of its own claimed for the session and flushed per test, a RabbitMQ vhost of its own
when `rabbitmqctl` can make one (else the default vhost, whose queues are purged per test), a
key prefix per test in the bucket. A missing service skips, and fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx2
import pytest

from conveyor.settings import BatchSettings, Settings
from conveyor.storage.database import open_database
from conveyor.storage.migrate import upgrade
from tests.conftest import POSTGRES_ADMIN_URL, require_service
from tests.contract.stack import SPECS, Stack, StackSpec, local_lister, s3_lister

REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379")
AMQP_URL = os.environ.get("CONVEYOR_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
REDIS_CLAIM_KEY = "conveyor-contract:claimed-by"

# Small numbers, so that small batches still cross every boundary: several chunks, several
# groups per chunk, several archive files, several pages for a GET without `count`.
CONTRACT_BATCHES = BatchSettings(
    chunk_size=20,
    group_size=7,
    results_per_file=25,
    page_size=10,
    ingest_page_size=4,
    worker_threads=2,
    # Groups of exactly `group_size` and a whole chunk per work step, however slow the
    # machine: tests count chunks and steps (a slice that ran out on a loaded machine sent a
    # work message the "lost message" test then dropped). Fairness has its own tests.
    work_slice_seconds=3600,
    group_hold_seconds=3600,
    # Tests drive the scheduler by hand (`stack.scheduler().tick(...)`), never by the clock.
    sweep_interval_seconds=3600.0,
    webhook_first_retry_seconds=0.2,
    webhook_max_attempts=5,
    webhook_timeout_seconds=2.0,
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- PostgreSQL: a migrated template, copied per test ---------------------------------------


def _pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(statement.encode())


@pytest.fixture(scope="session")
def contract_pg_template() -> Iterator[str]:
    import psycopg

    name = f"conveyor_contract_tpl_{uuid.uuid4().hex[:10]}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        require_service("PostgreSQL", str(exc).strip())
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    database = open_database(f"{base}/{name}")
    try:
        upgrade(database)
    finally:
        database.dispose()  # a template must have no connections when it is copied
    yield name
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def contract_postgres_url(contract_pg_template: str) -> Iterator[str]:
    name = f"conveyor_contract_{uuid.uuid4().hex[:10]}"
    _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{contract_pg_template}"')
    yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- Redis: a database of our own for the session -------------------------------------------


@pytest.fixture(scope="session")
def redis_db_url() -> Iterator[str]:
    import redis

    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        require_service("Redis", f"{REDIS_URL}: {exc}")
    # Claim an empty numbered database (SET NX), so that concurrent runs never share one.
    for db in range(15, 0, -1):
        url = f"{REDIS_URL.rstrip('/')}/{db}"
        client = redis.Redis.from_url(url)
        if client.set(REDIS_CLAIM_KEY, token, nx=True, ex=3600):
            if client.dbsize() == 1:
                break
            client.delete(REDIS_CLAIM_KEY)
        client.close()
    else:
        pytest.fail("no empty Redis database (1-15) to run the contract suite in")
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def fresh_redis_url(redis_db_url: str) -> str:
    import redis

    client = redis.Redis.from_url(redis_db_url)
    token = client.get(REDIS_CLAIM_KEY)
    client.flushdb()
    client.set(REDIS_CLAIM_KEY, token or b"contract", ex=3600)
    client.close()
    return redis_db_url


# --- RabbitMQ: a vhost of our own when we can make one --------------------------------------


def _rabbitmqctl(*args: str) -> bool:
    command = shutil.which("rabbitmqctl")
    if command is None:
        return False
    try:
        done = subprocess.run([command, "-q", *args], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    import pika
    import pika.exceptions

    base = AMQP_URL.rstrip("/")
    user = urlsplit(base).username or "guest"

    def reachable(url: str) -> str | None:
        parameters = pika.URLParameters(url)
        parameters.socket_timeout = 3
        parameters.connection_attempts = 1
        try:
            pika.BlockingConnection(parameters).close()
        except pika.exceptions.AMQPError as exc:
            return repr(exc)
        return None

    problem = reachable(f"{base}/%2F")
    if problem is not None:
        require_service("RabbitMQ", f"{base}: {problem}")
    vhost = f"conveyor-contract-{uuid.uuid4().hex[:10]}"
    own = _rabbitmqctl("add_vhost", vhost) and _rabbitmqctl(
        "set_permissions", "-p", vhost, user, ".*", ".*", ".*"
    )
    url = f"{base}/{quote(vhost)}" if own else f"{base}/%2F"
    if own and reachable(url) is not None:
        _rabbitmqctl("delete_vhost", vhost)
        own, url = False, f"{base}/%2F"
    yield url
    if own:
        _rabbitmqctl("delete_vhost", vhost)


# --- S3: moto's server mode, started here -----------------------------------------------------


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Server]:
    beside = Path(sys.executable).with_name("moto_server")
    command = str(beside) if beside.exists() else shutil.which("moto_server")
    if command is None:
        require_service("moto_server", "install moto[server] (the dev extra has it)")
        raise AssertionError("unreachable")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [command, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx2.get(endpoint, timeout=1)
                    break
                except httpx2.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        output = log.read().decode(errors="replace")[-2000:]
                        require_service("moto_server", f"did not start on {endpoint}: {output}")
                    time.sleep(0.1)
            bucket = "conveyor-contract"
            created = httpx2.put(f"{endpoint}/{bucket}")
            assert created.status_code == 200, created.text
            yield S3Server(endpoint, bucket)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- the stacks ---------------------------------------------------------------------------


@pytest.fixture(params=SPECS, ids=lambda spec: spec.name)
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    spec: StackSpec = request.param
    settings = Settings(data_dir=tmp_path / "data", secret="test-secret", batches=CONTRACT_BATCHES)
    changes: dict[str, object] = {}
    lister = local_lister(settings.blob_dir)
    if spec.database == "postgres":
        changes["database_url"] = request.getfixturevalue("contract_postgres_url")
    if spec.broker == "redis":
        redis_url = request.getfixturevalue("fresh_redis_url")
        changes |= {"broker_url": redis_url, "limiter_url": redis_url}
    elif spec.broker == "rabbitmq":
        changes |= {"broker_url": request.getfixturevalue("amqp_url"), "limiter_url": "database"}
    if spec.blobs == "s3":
        s3: S3Server = request.getfixturevalue("moto_s3")
        prefix = f"run-{uuid.uuid4().hex[:12]}"
        changes |= {
            "blob_url": f"s3://{s3.bucket}/{prefix}",
            "s3_endpoint": s3.endpoint,
            "s3_access_key_id": "testing",
            "s3_secret_access_key": "testing",
        }
        lister = s3_lister(s3.endpoint, s3.bucket, prefix)
    elif spec.blobs == "folder":
        shared = tmp_path / "shared-blobs"
        changes["blob_url"] = shared.as_uri()
        lister = local_lister(shared)
    started = Stack.start(spec, settings.model_copy(update=changes), lister)
    yield started
    started.stop()
