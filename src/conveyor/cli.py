"""The `conveyor` command."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from conveyor.settings import Settings


def _settings(**flags: Any) -> Settings:
    return Settings.from_env(**flags)


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


@click.group()
def main() -> None:
    """Conveyor: a self-hostable, Mailchimp-compatible batch operations server."""


@main.command()
@click.option("--host", default=None, help="Address to bind [env CONVEYOR_HOST; 127.0.0.1]")
@click.option("--port", type=int, default=None, help="Port [env CONVEYOR_PORT; 8000]")
@click.option("--public-url", default=None,
              help="Base URL clients reach this server at [env CONVEYOR_PUBLIC_URL]")  # fmt: skip
@with_database_options
def serve(**flags: Any) -> None:
    """Run the API and the background runtime in one process (the embedded default)."""
    import uvicorn

    from conveyor.http.app import create_app
    from conveyor.runtime.bootstrap import ensure_first_key, open_services
    from conveyor.runtime.embedded import embedded_runtime

    settings = _settings(**flags)
    _configure_logging(settings.log_level)
    services = open_services(settings)
    first = ensure_first_key(services.database)
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    click.echo(f"Conveyor is serving the Marketing API at {base.rstrip('/')}/3.0", err=True)
    if first is not None:
        click.echo(f"Created account {first.account_id} with API key:", err=True)
        click.echo(first.key)
    runtime = embedded_runtime(services)
    runtime.start()
    app = create_app(services, runtime.dispatcher.send)
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,
        )
    finally:
        runtime.stop()
        services.close()


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--dc", default="us1", show_default=True, help="Datacenter suffix of the key")
@click.option("--account", "account_id", default=None, help="Add a key to this account")
@with_database_options
def keys_create(dc: str, account_id: str | None, **flags: Any) -> None:
    """Print one new key, for a new account unless --account is given."""
    from conveyor.runtime.bootstrap import open_services
    from conveyor.storage import accounts

    services = open_services(_settings(**flags))
    try:
        with services.database.write() as conn:
            if account_id is None:
                account_id = accounts.create_account(conn)
            key = accounts.create_key(conn, account_id, dc)
    except accounts.UnknownAccount as exc:
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
    from conveyor.runtime.bootstrap import open_services
    from conveyor.storage import accounts

    services = open_services(_settings(**flags))
    try:
        with services.database.read() as conn:
            rows = accounts.list_keys(conn)
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
    from conveyor.runtime.bootstrap import open_services
    from conveyor.storage import accounts

    services = open_services(_settings(**flags))
    try:
        with services.database.write() as conn:
            revoked = accounts.revoke_key(conn, key)
    finally:
        services.close()
    if not revoked:
        raise click.ClickException("no such active key")
    click.echo("revoked", err=True)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


if __name__ == "__main__":  # pragma: no cover
    main()
