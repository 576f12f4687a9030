"""What every client command shares: where it sends (the target), how errors are shown,
JSON output, plural words."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click
import orjson
from rich.console import Console

from conveyor.client.client import DEFAULT_WAIT_TIMEOUT, ENV_API_KEY, ENV_URL, Client
from conveyor.client.dbsync.errors import SyncError
from conveyor.client.errors import (
    ArchiveError,
    BatchNotFinished,
    ConfigurationError,
    ConveyorApiError,
    ConveyorConnectionError,
    ExtensionUnavailable,
    InvalidOperation,
    WaitTimeout,
)
from conveyor.client.member_import import ImportFileError

F = TypeVar("F", bound=Callable[..., Any])

# Distinct from 1 (an error) so that scripts can tell "still running" from "went wrong".
EXIT_WAIT_TIMEOUT = 3


class CommandError(click.ClickException):
    """A failure shown as one ``Error: …`` line; ``exit_code`` 1 unless a subclass says so."""


class WaitStopped(CommandError):
    exit_code = EXIT_WAIT_TIMEOUT


class NotOnMailchimp(CommandError):
    """The command needs a Conveyor extension and the target is Mailchimp: exit 2, as for
    any other command that cannot work as given, but one line (no usage text: the command
    line is right, the target lacks the endpoint)."""

    exit_code = 2


class Interrupted(CommandError):
    exit_code = 130  # the shell's convention for a SIGINT


class SomeRowsFailed(CommandError):
    """The command ran to its end, but rows failed: the summary said which; exit 1."""

    def show(self, file: Any = None) -> None:
        # The summary above already says it in full; one closing line is enough.
        click.echo(f"Error: {self.message}", err=True)


@dataclass(frozen=True)
class Target:
    """Where a command sends: a Conveyor server (--url) or Mailchimp itself (--mailchimp).

    Neither is assumed: without CONVEYOR_URL, a key alone used to send to the real Mailchimp,
    and a test meant for a local server could write to a production audience.
    """

    url: str | None
    api_key: str | None
    mailchimp: bool

    def client(self, *, writes: bool = False) -> Client:
        if self.url and self.mailchimp:
            raise click.UsageError(
                f"--mailchimp and --url (or {ENV_URL}) name two targets: give one"
            )
        if not self.url and not self.mailchimp:
            raise click.UsageError(
                f"no target: give --url (or {ENV_URL}) for a Conveyor server, or --mailchimp "
                "to send to Mailchimp itself"
            )
        if not self.api_key:
            raise click.UsageError(f"no API key: give --api-key or set {ENV_API_KEY}")
        try:
            client = Client(self.api_key, base_url=self.url or None)
        except ConfigurationError as exc:
            raise click.UsageError(str(exc)) from None
        if writes:
            stderr().print(f"target: {describe_target(client)}")
        return client


def describe_target(client: Client) -> str:
    host = urlsplit(client.base_url).netloc
    kind = "Mailchimp" if host.endswith(".api.mailchimp.com") else "Conveyor server"
    return f"{host} ({kind})"


def connection_options(func: F) -> F:
    """``--url``, ``--mailchimp`` and ``--api-key`` on every command, given as one ``target``."""

    @functools.wraps(func)
    def wrapper(
        *args: Any, url: str | None, api_key: str | None, mailchimp: bool, **kwargs: Any
    ) -> Any:
        return func(*args, target=Target(url, api_key, mailchimp), **kwargs)

    command: Any = wrapper
    command = click.option(
        "--api-key",
        envvar=ENV_API_KEY,
        default=None,
        help=f"API key; on Mailchimp its -dc suffix picks the datacenter [env {ENV_API_KEY}]",
    )(command)
    command = click.option(
        "--mailchimp",
        is_flag=True,
        help="Send to Mailchimp itself (https://<dc>.api.mailchimp.com), not a Conveyor server",
    )(command)
    command = click.option(
        "--url",
        envvar=ENV_URL,
        default=None,
        help=f"A Conveyor server, e.g. http://127.0.0.1:8000 [env {ENV_URL}]",
    )(command)
    return command  # type: ignore[no-any-return]


def wait_options(func: F) -> F:
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0),
        default=DEFAULT_WAIT_TIMEOUT,
        show_default=True,
        help="Seconds to wait for the batch to finish",
    )(func)


def json_option(help: str = "Print JSON instead of text") -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help=help)


def stderr() -> Console:
    # Built per command: click's test runner swaps sys.stderr, and rich reads it when printing.
    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    return Console(soft_wrap=True)


def echo_json(value: Any, *, indent: bool = False) -> None:
    option = orjson.OPT_INDENT_2 if indent else 0
    click.echo(orjson.dumps(value, option=option, default=str).decode())


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 operation``, ``2 operations``, ``0 operations``."""
    return f"{count} {word}" if count == 1 else f"{count} {many or word + 's'}"


@contextmanager
def reported() -> Iterator[None]:
    """The client's errors as short messages and a non-zero exit, never as a traceback."""
    try:
        yield
    except ConveyorApiError as exc:
        # The problem's title and detail, and field errors, as the API worded them.
        raise CommandError(exc.message) from None
    except WaitTimeout as exc:
        raise WaitStopped(str(exc)) from None
    except ExtensionUnavailable as exc:
        raise NotOnMailchimp(str(exc)) from None
    except (
        ConveyorConnectionError,
        BatchNotFinished,
        ArchiveError,
        ImportFileError,
        InvalidOperation,
        SyncError,
    ) as exc:
        raise CommandError(str(exc)) from None
