"""A scaled-out Conveyor as real processes, for end-to-end chaos tests and the scale bench.

    infra = Infrastructure(database_url=..., broker_url="redis://127.0.0.1:6379/13", ...)
    with Deployment(tmp_path, infra, apis=2, workers=2) as deployment:
        key = deployment.new_key()
        deployment.workers[0].kill()     # SIGKILL to the whole process group
        deployment.workers[0].start()    # same port, same settings

Each role (`conveyor api`, `conveyor worker`, `conveyor scheduler`) is a `RoleProcess`
started in its own session, so that a kill reaches every process of the role: `conveyor
worker` execs Dramatiq's CLI, which forks worker processes and the Prometheus exposition
server; SIGKILL to the master alone would leave its children running. Output goes to files
(one pair per start) beside the role's data dir, so a full pipe never stalls a process.

A remote process cannot be joined: readiness and everything else is polled, with deadlines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
import psutil

from tests.e2e.server import KEY_SHAPE, ServerError, child_env, conveyor_command, free_port
from tests.shape_check import install_shape_check_from_env

READY_POLL = 0.05  # seconds between readiness checks
# Queues a Conveyor deployment declares on RabbitMQ (Dramatiq adds a delay and a dead-letter
# queue beside each).
RABBITMQ_QUEUES = tuple(
    f"{queue}{suffix}"
    for queue in ("conveyor", "conveyor-webhooks")
    for suffix in ("", ".DQ", ".XQ")
)


class RoleProcess:
    """One `conveyor ROLE` process (and its children) in a session of its own."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        workdir: Path,
        ready: Callable[[RoleProcess], bool],
        port: int | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.name = name
        # The API's HTTP port, or a worker's Prometheus port: kept across restarts.
        self.port = port
        self.args = list(args)
        self.env = dict(env)
        self.workdir = workdir
        self._ready = ready
        self.startup_timeout = startup_timeout
        self.starts = 0
        self.kills = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self._running().pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.starts}.stderr"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.starts}.stdout"

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def start(self, *, wait: bool = True) -> RoleProcess:
        if self.running:
            raise ServerError(f"{self.name} is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self._process = subprocess.Popen(
                conveyor_command(*self.args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=child_env(self.env),
                start_new_session=True,  # its own process group: killpg reaches its children
            )
        if wait:
            self.wait_ready()
        return self

    def is_ready(self) -> bool:
        """One readiness check, no waiting; False while starting or when dead."""
        return self.running and self._ready(self)

    def wait_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        while not self._ready(self):
            process = self._running()
            if process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {process.returncode} during start:\n"
                    + self.stderr_text()[-4000:]
                )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.name} not ready within {timeout or self.startup_timeout:g} s:\n"
                    + self.stderr_text()[-4000:]
                )
            time.sleep(READY_POLL)

    def group(self) -> list[psutil.Process]:
        """Live (non-zombie) processes of this role's process group."""
        if self._process is None:
            return []
        pgid = self._process.pid  # the session leader's pid is the group id
        members = []
        for proc in psutil.process_iter(["status"]):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    members.append(proc)
        return members

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL to every process of the role at once, as in an OOM kill or a power cut."""
        process = self._running()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)
        self._wait_group_gone(timeout)
        self.kills += 1

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the group and a clean exit; SIGKILL whatever is left at the deadline."""
        if self._process is None:
            return
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait(timeout)
        self._wait_group_gone(timeout)

    def restart(self, *, wait: bool = True) -> RoleProcess:
        if self.running:
            self.stop()
        return self.start(wait=wait)

    def _wait_group_gone(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while left := self.group():
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name}: processes {[p.pid for p in left]} outlived kill")
            time.sleep(0.02)

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise ServerError(f"{self.name} was not started")
        return self._process


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1.0)
    except httpx.TransportError:
        return False
    return True


def _api_ready(role: RoleProcess) -> bool:
    return _answers(f"http://127.0.0.1:{role.port}/3.0/ping")


def _worker_ready(role: RoleProcess) -> bool:
    # Dramatiq starts the exposition server (a fork process) only once every worker
    # process has booted, so an answer on the Prometheus port means the worker consumes.
    return _answers(f"http://127.0.0.1:{role.port}/")


def _scheduler_ready(role: RoleProcess) -> bool:
    return "Conveyor scheduler running" in role.stderr_text()


# -- infrastructure -----------------------------------------------------------------------


@dataclass(frozen=True)
class Infrastructure:
    """What every role shares: a database, a broker, blob storage (and S3 settings)."""

    database_url: str
    broker_url: str
    blob_url: str
    s3_endpoint: str | None = None
    limiter_url: str | None = None

    def env(self) -> dict[str, str]:
        env = {
            "CONVEYOR_DATABASE_URL": self.database_url,
            "CONVEYOR_BROKER_URL": self.broker_url,
            "CONVEYOR_BLOB_URL": self.blob_url,
        }
        if self.s3_endpoint:
            env |= {
                "CONVEYOR_S3_ENDPOINT": self.s3_endpoint,
                "CONVEYOR_S3_ACCESS_KEY_ID": "testing",
                "CONVEYOR_S3_SECRET_ACCESS_KEY": "testing",
            }
        if self.limiter_url:
            env["CONVEYOR_LIMITER_URL"] = self.limiter_url
        return env


@contextmanager
def fresh_database(admin_url: str, prefix: str = "conveyor_scaled") -> Iterator[str]:
    """A new, empty PostgreSQL database; dropped (with its connections) afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flush_redis(url: str) -> None:
    """Empty one Redis database (the URL's DB number): a broker left from an earlier run."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def purge_rabbitmq(url: str, queues: Sequence[str] = RABBITMQ_QUEUES) -> dict[str, int]:
    """Purge Conveyor's queues on a RabbitMQ vhost; missing queues are skipped."""
    import pika
    from pika.exceptions import ChannelClosedByBroker

    purged: dict[str, int] = {}
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for queue in queues:
            try:
                frame = channel.queue_purge(queue)
                purged[queue] = int(frame.method.message_count)
            except ChannelClosedByBroker as exc:  # 404: not declared yet
                if exc.reply_code != 404:
                    raise
                channel = connection.channel()
    finally:
        connection.close()
    return purged


@dataclass
class MotoS3:
    """moto's S3 server (`moto_server`) as a child process, with one bucket created."""

    workdir: Path
    bucket: str = "conveyor-e2e"
    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> MotoS3:
        self.workdir.mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).with_name("moto_server")
        command = [str(exe), "-H", "127.0.0.1", "-p", str(self.port)]
        with (self.workdir / "moto.log").open("wb") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                created = httpx.put(f"{self.endpoint}/{self.bucket}", timeout=2.0)
                created.raise_for_status()
                return self
            except httpx.TransportError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise ServerError("moto_server did not start") from None
                time.sleep(READY_POLL)

    def keys(self, prefix: str = "") -> list[str]:
        import xml.etree.ElementTree as ET

        response = httpx.get(
            f"{self.endpoint}/{self.bucket}", params={"list-type": "2", "prefix": prefix}
        )
        response.raise_for_status()
        ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
        return [n.text or "" for n in ET.fromstring(response.text).iterfind(".//s3:Key", ns)]

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(10)


# -- a deployment -------------------------------------------------------------------------


class Deployment:
    """`apis` API processes, `workers` worker processes and one `conveyor scheduler`."""

    def __init__(
        self,
        workdir: Path,
        infra: Infrastructure,
        *,
        apis: int = 2,
        workers: int = 2,
        worker_args: Sequence[str] = ("--processes", "1", "--threads", "2"),
        env: Mapping[str, str] | None = None,
        scheduler: bool = True,
        startup_timeout: float = 90.0,
    ) -> None:
        self.workdir = workdir
        self.infra = infra
        # One secret for every process, as docs/deploy.md asks.
        self.env = {"CONVEYOR_SECRET": f"e2e-{uuid.uuid4().hex}", **infra.env(), **(env or {})}
        self.apis: list[RoleProcess] = []
        self.workers: list[RoleProcess] = []
        self.schedulers: list[RoleProcess] = []
        self._clients: list[httpx.Client] = []
        self.startup_timeout = startup_timeout
        for index in range(1, apis + 1):
            port = free_port()
            args = ["api", "--port", str(port)]
            self.apis.append(self._role(f"api-{index}", args, _api_ready, port))
        for index in range(1, workers + 1):
            port = free_port()
            args = ["worker", *worker_args, "--prometheus-port", str(port)]
            self.workers.append(self._role(f"worker-{index}", args, _worker_ready, port))
        if scheduler:
            self.schedulers.append(self._role("scheduler", ["scheduler"], _scheduler_ready))

    def _role(
        self,
        name: str,
        args: list[str],
        ready: Callable[[RoleProcess], bool],
        port: int | None = None,
    ) -> RoleProcess:
        folder = self.workdir / name
        env = {**self.env, "CONVEYOR_DATA_DIR": str(folder / "data")}
        return RoleProcess(
            name,
            args,
            env=env,
            workdir=folder,
            ready=ready,
            port=port,
            startup_timeout=self.startup_timeout,
        )

    @property
    def roles(self) -> list[RoleProcess]:
        return [*self.apis, *self.workers, *self.schedulers]

    @property
    def scheduler(self) -> RoleProcess:
        return self.schedulers[0]

    def api_url(self, index: int) -> str:
        """`http://127.0.0.1:PORT/3.0` of API process `index`."""
        return f"http://127.0.0.1:{self.apis[index].port}/3.0"

    def start(self) -> Deployment:
        # Migrations first, once (the roles would serialize on an advisory lock anyway), then
        # every role at the same time: they boot in parallel.
        self.new_key()
        for role in self.roles:
            role.start(wait=False)
        try:
            for role in self.roles:
                role.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def new_key(self) -> str:
        """A new account and its key, made with `conveyor keys create` on the shared database."""
        done = subprocess.run(
            conveyor_command("keys", "create", "--data-dir", str(self.workdir / "keys")),
            env=child_env(self.env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        key = done.stdout.strip()
        if done.returncode != 0 or not KEY_SHAPE.fullmatch(key):
            raise ServerError(f"keys create failed ({done.returncode}): {done.stderr}")
        return key

    def client(self, index: int, key: str, timeout: float = 60.0) -> httpx.Client:
        client = httpx.Client(
            base_url=self.api_url(index) + "/", auth=("e2e", key), timeout=timeout
        )
        install_shape_check_from_env(client)
        self._clients.append(client)  # closed with the deployment
        return client

    def logs(self, tail: int = 3000) -> str:
        """The end of every role's current log, for a failure message."""
        return "\n".join(f"--- {role.name}\n{role.stderr_text()[-tail:]}" for role in self.roles)

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        errors: list[BaseException] = []
        for role in self.roles:
            try:
                role.stop(timeout=10.0)
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Deployment:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
