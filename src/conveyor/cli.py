"""The `conveyor` command."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from conveyor.settings import Settings, SettingsError, mask_password

if TYPE_CHECKING:
    from conveyor.composition import Services


def _settings(**flags: Any) -> Settings:
    """Settings from flags and the environment; a bad value ends the command with one line
    per problem (naming the variable) and exit status 2, never a traceback."""
    try:
        return Settings.from_env(**flags)
    except SettingsError as exc:
        for line in exc.problems:
            click.echo(f"Error: {line}", err=True)
        sys.exit(2)


database_options = [
    click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                 help="Folder for the SQLite database and blobs [env CONVEYOR_DATA_DIR; ./data]"),
    click.option("--database-url", default=None,
                 help="A PostgreSQL URL instead of SQLite [env CONVEYOR_DATABASE_URL]"),
]  # fmt: skip


def with_database_options(func: Any) -> Any:
    for option in reversed(database_options):
        func = option(func)
    return func


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread once uvicorn has shut down (it re-raises the
    signal it caught): the command's `finally` blocks then stop the runtime, its helper
    processes and the database before the process dies of the signal, as it would have.
    With the default handler it died at once and none of them ran."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


class _ConveyorGroup(click.Group):
    """The server commands are defined below; the client's (`batch`, `members`, `webhooks`,
    `lists`) are added on first need: importing them took ~0.4 s, too much of the second
    `conveyor emulate` has to start in (bench/emulator.py)."""

    _client_added = False

    def _add_client_commands(self) -> None:
        if not self._client_added:
            self._client_added = True
            from conveyor.client.cli import register

            register(self)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _Terminated:
            # Everything has been stopped on the way here; now die of the signal, as a
            # supervisor expects of a process it sent SIGTERM.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)
            raise

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and not self._client_added:
            self._add_client_commands()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_client_commands()
        return super().list_commands(ctx)


@click.group(cls=_ConveyorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="conveyor", prog_name="conveyor")
def main() -> None:
    """Conveyor: a self-hostable, Mailchimp-compatible batch operations server."""


@main.command()
@click.option("--host", default=None, help="Address to bind [env CONVEYOR_HOST; 127.0.0.1]")
@click.option("--port", type=int, default=None,
              help="Port, 0 for any free one [env CONVEYOR_PORT; 8000]")  # fmt: skip
@click.option("--public-url", default=None,
              help="Base URL clients reach this server at [env CONVEYOR_PUBLIC_URL]")  # fmt: skip
@with_database_options
def serve(**flags: Any) -> None:
    """Run the API and the background runtime in one process (the embedded default)."""
    from conveyor.composition import ensure_first_key
    from conveyor.http.app import create_app
    from conveyor.runtime.embedded import embedded_runtime

    settings = _settings(**flags)
    _configure_logging(settings)
    listener = _listen(settings)
    services = _open(settings)
    first = ensure_first_key(services)
    if first is not None:
        click.echo(f"Created account {first.account_id} with API key:", err=True)
        click.echo(first.key)
    else:
        _key_hint(services, settings)
    runtime = embedded_runtime(services)
    runtime.start()
    try:
        app = create_app(services, runtime.dispatcher.send, readiness={"runtime": runtime.check})
        _serve_http(app, settings, listener)
    finally:
        runtime.stop()
        services.close()


@main.command()
@click.option("--host", default=None, help="Address to bind [env CONVEYOR_HOST; 127.0.0.1]")
@click.option("--port", type=int, default=None,
              help="Port, 0 for any free one [env CONVEYOR_PORT; 8000]")  # fmt: skip
@click.option("--public-url", default=None, help="Base URL clients use [env CONVEYOR_PUBLIC_URL]")
@click.option("--broker-url", default=None, help="redis:// or amqp:// [env CONVEYOR_BROKER_URL]")
@click.option("--blob-url", default=None, help="file:// or s3:// [env CONVEYOR_BLOB_URL]")
@with_database_options
def api(**flags: Any) -> None:
    """Run only the HTTP API; workers run elsewhere (`conveyor worker`)."""
    from conveyor.http.app import create_app
    from conveyor.runtime.broker import broker_check
    from conveyor.runtime.distributed import broker_dispatcher

    settings = _settings(**flags)
    _configure_logging(settings)
    _require_shared_setup(settings, "api")
    listener = _listen(settings)
    services = _open(settings)
    _key_hint(services, settings)
    broker, dispatcher = broker_dispatcher(services)
    try:
        app = create_app(services, dispatcher.send, readiness={"broker": broker_check(broker)})
        _serve_http(app, settings, listener)
    finally:
        broker.close()
        services.close()


@main.command()
@click.option("--host", default=None, help="Address to bind [env CONVEYOR_HOST; 127.0.0.1]")
@click.option("--port", type=int, default=None,
              help="Port, 0 for any free one [env CONVEYOR_PORT; 8000]")  # fmt: skip
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Keep the data here [default: a fresh temporary folder]")  # fmt: skip
@click.option("--public-url", default=None, help="Base URL clients use [env CONVEYOR_PUBLIC_URL]")
def emulate(data_dir: Path | None, **flags: Any) -> None:
    """Run a Mailchimp for tests: any well-formed key works, test controls at /_conveyor/.

    Prints the API's base URL on stdout (`--port 0` picks a free port).
    """
    import os
    import shutil
    import signal
    import tempfile

    from conveyor.emulator.template import seed_database
    from conveyor.http.app import create_app
    from conveyor.runtime.embedded import embedded_runtime

    scratch = None if data_dir else Path(tempfile.mkdtemp(prefix="conveyor-emulate-"))
    # A test run wants the URL, not the migration log: warnings only unless asked.
    quiet = None if os.environ.get("CONVEYOR_LOG_LEVEL") else "warning"
    settings = _settings(**flags, data_dir=data_dir or scratch, emulate=True, log_level=quiet)
    # uvicorn hands a stop signal back to the handler it found once it has shut down: end
    # normally then, so the temporary data dir is removed (a test harness sends SIGTERM).
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: sys.exit(0))
    _configure_logging(settings)
    listener = _listen(settings)
    seeded = not settings.database_url and seed_database(settings.data_dir)
    services = _open(settings, migrate=not seeded)
    runtime = embedded_runtime(services)
    runtime.start()
    try:
        app = create_app(services, runtime.dispatcher.send, readiness={"runtime": runtime.check})
        host, port = listener.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        base = (settings.public_url or f"http://{shown}:{port}").rstrip("/")
        click.echo(f"{base}/3.0")
        click.echo(
            "Conveyor emulator: any key <32 hex>-<dc> works (e.g. "
            f"{'0' * 32}-us1); test controls at {base}/_conveyor/",
            err=True,
        )
        _serve_http(app, settings, listener)
    finally:
        runtime.stop()
        services.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _listen(settings: Settings) -> socket.socket:
    """Bind the listening socket first: a busy port is one clear line, before anything else
    starts, and the real port (of `--port 0` too) is known before it is announced."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((settings.host, settings.port))
    except OSError as exc:
        listener.close()
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror} "
            "(another server there? choose one with --port or CONVEYOR_PORT)"
        ) from None
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener


def _open(settings: Settings, *, migrate: bool = True) -> Services:
    from conveyor.composition import open_services
    from conveyor.storage.database import DatabaseUnavailable

    try:
        return open_services(settings, migrate=migrate)
    except DatabaseUnavailable as exc:
        variable = "CONVEYOR_DATABASE_URL" if settings.database_url else "CONVEYOR_DATA_DIR"
        click.echo(f"Error: {variable}: {exc}", err=True)
        sys.exit(2)


def _serve_http(app: Any, settings: Settings, listener: socket.socket) -> None:
    import uvicorn

    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    base = (settings.public_url or f"http://{shown}:{port}").rstrip("/")
    click.echo(f"Conveyor is serving the Marketing API at {base}/3.0", err=True)
    from conveyor.http.wire import uvicorn_options
    from conveyor.runtime.gc_tuning import tune_garbage_collector

    # log_config=None: uvicorn's lines go through the process's handler, in its format.
    config = uvicorn.Config(
        app,
        log_level=settings.log_level,
        access_log=False,
        log_config=None,
        **uvicorn_options(),
    )
    server = uvicorn.Server(config)
    tune_garbage_collector()
    # Unless the command chose its own (`emulate` ends normally on a stop signal).
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _raise_terminated)
    server.run(sockets=[listener])


def _key_hint(services: Services, settings: Settings) -> None:
    """Say how to get a key when none is shown: every request needs one."""
    with services.database.read() as conn:
        active = services.accounts.count_active_keys(conn)
    if settings.database_url:
        where = f"--database-url '{mask_password(settings.database_url)}'"
    else:
        where = f"--data-dir {settings.data_dir}"
    if active:
        click.echo(f"{active} API key(s) active; another: conveyor keys create {where}", err=True)
    else:
        click.echo(f"No API key yet: create one with  conveyor keys create {where}", err=True)


@main.command()
@click.option("--processes", "-p", type=int, default=2, show_default=True)
@click.option("--threads", "-t", type=int, default=4, show_default=True)
@click.option(
    "--queues",
    type=click.Choice(["all", "batches", "webhooks"]),
    default="all",
    show_default=True,
    help="Run webhook deliveries on their own workers so slow receivers never slow batches",
)
@click.option("--prometheus-port", type=int, default=9191, show_default=True)
@click.option("--broker-url", default=None, help="redis:// or amqp:// [env CONVEYOR_BROKER_URL]")
@click.option("--blob-url", default=None, help="file:// or s3:// [env CONVEYOR_BLOB_URL]")
@with_database_options
def worker(processes: int, threads: int, queues: str, prometheus_port: int, **flags: Any) -> None:
    """Run Dramatiq worker processes for batches and webhook deliveries."""
    import os
    import shutil

    from conveyor.runtime.broker import QUEUE, WEBHOOK_QUEUE

    settings = _settings(**flags)
    _require_shared_setup(settings, "worker")
    _open(settings).close()  # migrate once here, not in every worker process
    env = dict(os.environ)
    for name in ("database_url", "broker_url", "blob_url"):
        value = getattr(settings, name)
        if value:
            env[f"CONVEYOR_{name.upper()}"] = str(value)
    env["CONVEYOR_DATA_DIR"] = str(settings.data_dir)
    env["dramatiq_prom_port"] = str(prometheus_port)
    env.setdefault("dramatiq_prom_host", "127.0.0.1")  # 0.0.0.0 for a scraper elsewhere
    # A chunk message runs for seconds: a worker that prefetched more messages than it has
    # threads would sit on work that another worker's idle threads could run (Dramatiq's
    # default is twice the threads), and a SIGKILL would strand those too.
    env.setdefault("dramatiq_queue_prefetch", str(threads))
    if "dramatiq_prom_db" not in env:
        # Dramatiq keeps Prometheus' multiprocess files in one folder per machine
        # (/tmp/dramatiq-prometheus): two workers on one host reported each other's metrics,
        # and the in-progress gauge of a SIGKILLed process counted forever. One folder per
        # exporter port, emptied at start: every process of this worker is new.
        metrics_dir = (settings.data_dir / "prometheus" / str(prometheus_port)).resolve()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env["dramatiq_prom_db"] = str(metrics_dir)
    # Set before any import of prometheus_client in the worker processes (it picks its mode
    # at import): Conveyor's counters then go to the same folder as Dramatiq's, and the
    # exporter on --prometheus-port serves the sum over the processes (docs/observability.md).
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", env["dramatiq_prom_db"])
    selected = {"all": [QUEUE, WEBHOOK_QUEUE], "batches": [QUEUE], "webhooks": [WEBHOOK_QUEUE]}
    command = [
        sys.executable, "-m", "dramatiq", "conveyor.worker_entry",
        "--processes", str(processes), "--threads", str(threads),
        "--queues", *selected[queues],
    ]  # fmt: skip
    os.execvpe(sys.executable, command, env)


@main.command()
@click.option("--broker-url", default=None, help="redis:// or amqp:// [env CONVEYOR_BROKER_URL]")
@click.option("--blob-url", default=None, help="file:// or s3:// [env CONVEYOR_BLOB_URL]")
@with_database_options
def scheduler(**flags: Any) -> None:
    """Re-send lost work and purge expired batches; several may run, one schedules."""
    import signal
    import threading

    from conveyor.runtime.distributed import Lease, broker_dispatcher
    from conveyor.runtime.scheduler import Scheduler

    settings = _settings(**flags)
    _configure_logging(settings)
    _require_shared_setup(settings, "scheduler")
    services = _open(settings)
    broker, dispatcher = broker_dispatcher(services)
    batch = settings.batches
    loop = Scheduler(
        services.engine,
        services.webhooks,
        dispatcher,
        interval_seconds=batch.sweep_interval_seconds,
        idle_seconds=batch.sweep_idle_seconds,
    )
    lease = Lease(services.leases, "scheduler", seconds=batch.sweep_interval_seconds * 3)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo("Conveyor scheduler running", err=True)
    try:
        while not stop.wait(batch.sweep_interval_seconds):
            # A database that is briefly away must not end the scheduler: log, try again.
            try:
                if lease.acquire():
                    loop.tick()
            except Exception:
                logging.getLogger("conveyor.scheduler").exception("tick failed")
    finally:
        lease.release()
        broker.close()
        services.close()


def _require_shared_setup(settings: Settings, role: str) -> None:
    if not settings.broker_url:
        raise click.ClickException(
            f"`conveyor {role}` needs a broker shared with the other roles: set "
            "CONVEYOR_BROKER_URL (redis://… or amqp://…). For one process, use `conveyor serve`."
        )


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--dc", default="us1", show_default=True, help="Datacenter suffix of the key")
@click.option("--account", "account_id", default=None, help="Add a key to this account")
@with_database_options
def keys_create(dc: str, account_id: str | None, **flags: Any) -> None:
    """Print one new key, for a new account unless --account is given."""
    from conveyor.storage.accounts import UnknownAccount

    services = _open(_settings(**flags))
    accounts = services.accounts
    try:
        with services.database.write() as conn:
            if account_id is None:
                account_id = accounts.create_account(conn)
            key = accounts.create_key(conn, account_id, dc)
    except UnknownAccount as exc:
        raise click.ClickException(f"no account {exc.args[0]}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        services.close()
    click.echo(key)


@keys.command("list")
@with_database_options
def keys_list(**flags: Any) -> None:
    """List keys (only a hint of each: keys are stored hashed)."""

    services = _open(_settings(**flags))
    try:
        with services.database.read() as conn:
            rows = services.accounts.list_keys(conn)
    finally:
        services.close()
    for info in rows:
        state = f"revoked {info.revoked_at}" if info.revoked_at else "active"
        click.echo(f"{info.hint}-{info.dc}\taccount {info.account_id}\t{info.created_at}\t{state}")


@keys.command("revoke")
@click.argument("key")
@with_database_options
def keys_revoke(key: str, **flags: Any) -> None:
    """Revoke KEY; requests with it fail within seconds."""

    services = _open(_settings(**flags))
    try:
        with services.database.write() as conn:
            revoked = services.accounts.revoke_key(conn, key)
    finally:
        services.close()
    if not revoked:
        raise click.ClickException("no such active key")
    click.echo("revoked", err=True)


def _configure_logging(settings: Settings) -> None:
    from conveyor.observability.logs import configure_logging

    configure_logging(settings)


if __name__ == "__main__":  # pragma: no cover
    main()
