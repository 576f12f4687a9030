"""``conveyor batch``, ``conveyor members`` and ``conveyor webhooks``: the client's commands.

Results and ids go to stdout, so they can be piped; progress, summaries and errors go to
stderr. Every wait shows a rich progress bar (plain lines when stderr is not a terminal).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import ijson
import orjson
from rich.console import Console
from rich.table import Table

from conveyor.client.client import (
    DEFAULT_WAIT_TIMEOUT,
    ENV_API_KEY,
    ENV_URL,
    Client,
)
from conveyor.client.errors import (
    ArchiveError,
    BatchNotFinished,
    ConfigurationError,
    ConveyorApiError,
    ConveyorConnectionError,
    InvalidOperation,
    WaitTimeout,
)
from conveyor.client.member_import import (
    ImportFileError,
    MemberImport,
    default_results_path,
)
from conveyor.client.models import Batch, BatchResult
from conveyor.client.progress import BatchProgress

F = TypeVar("F", bound=Callable[..., Any])

# Distinct from 1 (an error) so that scripts can tell "still running" from "went wrong".
EXIT_WAIT_TIMEOUT = 3


class CommandError(click.ClickException):
    """A failure shown as one ``Error: …`` line; ``exit_code`` 1 unless a subclass says so."""


class WaitStopped(CommandError):
    exit_code = EXIT_WAIT_TIMEOUT


class WaitInterrupted(CommandError):
    exit_code = 130  # the shell's convention for a SIGINT


def connection_options(func: F) -> F:
    """``--url`` and ``--api-key`` on every command, so they may follow the subcommand."""
    func = click.option(
        "--api-key",
        envvar=ENV_API_KEY,
        default=None,
        help=f"API key; its -dc suffix picks Mailchimp's datacenter [env {ENV_API_KEY}]",
    )(func)
    func = click.option(
        "--url",
        envvar=ENV_URL,
        default=None,
        help=f"A Conveyor server, e.g. http://127.0.0.1:8000 [env {ENV_URL}]",
    )(func)
    return func


def wait_options(func: F) -> F:
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0),
        default=DEFAULT_WAIT_TIMEOUT,
        show_default=True,
        help="Seconds to wait for the batch to finish",
    )(func)


def csv_options(func: F) -> F:
    """How to read the input CSV and where to write the results one, for import and results."""
    func = click.option(
        "--encoding",
        default="utf-8-sig",
        show_default=True,
        help="The CSV's text encoding (cp1252 for many Excel exports)",
    )(func)
    func = click.option(
        "--delimiter", default=",", show_default=True, help="The CSV's field separator"
    )(func)
    return click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Results CSV path [default: <input>.results.csv beside the input]",
    )(func)


def _stderr() -> Console:
    # Built per command: click's test runner swaps sys.stderr, and rich reads it when printing.
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _client(url: str | None, api_key: str | None) -> Client:
    try:
        return Client(api_key or None, base_url=url or None)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None


@contextmanager
def _reported() -> Iterator[None]:
    """The client's errors as short messages and a non-zero exit, never as a traceback."""
    try:
        yield
    except ConveyorApiError as exc:
        # The problem's title and detail, and field errors, as the API worded them.
        raise CommandError(exc.message) from None
    except WaitTimeout as exc:
        raise WaitStopped(str(exc)) from None
    except (
        ConveyorConnectionError,
        BatchNotFinished,
        ArchiveError,
        ImportFileError,
        InvalidOperation,
    ) as exc:
        raise CommandError(str(exc)) from None


def _wait(client: Client, batch_id: str, timeout: float) -> Batch:
    try:
        with BatchProgress(_stderr()) as progress:
            return client.wait(batch_id, timeout=timeout, progress=progress)
    except KeyboardInterrupt:
        # Ctrl-C stops the waiting, not the batch: say so, and how to pick it up again.
        raise WaitInterrupted(
            f"stopped waiting; batch {batch_id} runs on (follow it: conveyor batch wait {batch_id})"
        ) from None


def _finished_line(batch: Batch) -> str:
    return (
        f"batch {batch.id} finished: {batch.total_operations} operations, "
        f"{batch.succeeded_operations} succeeded, {batch.errored_operations} errored"
    )


# -- operations files ------------------------------------------------------------------


def _read_operations(path: str, fmt: str | None) -> Iterator[dict[str, Any]]:
    """The operations of a ``.json`` (``{"operations": [...]}`` or a bare array) or ``.jsonl``.

    Both are streamed: a file of a million operations is never held in memory.
    """
    chosen = fmt or ("jsonl" if path.endswith((".jsonl", ".ndjson")) or path == "-" else "json")
    handle: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    count = 0
    try:
        items = _jsonl_items(handle, path) if chosen == "jsonl" else _json_items(handle, path)
        for count, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise click.BadParameter(f"operation {count} is not a JSON object", param_hint=path)
            yield item
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    if count == 0:
        raise click.BadParameter("holds no operations", param_hint=path)


def _json_items(handle: IO[bytes], path: str) -> Iterator[Any]:
    first = b""
    while not first.strip():
        first = handle.read(1)
        if not first:
            return
    prefix = "item" if first == b"[" else "operations.item"

    def replay() -> Iterator[bytes]:
        # The byte read to choose the prefix goes back in front of the rest of the file.
        yield first
        while chunk := handle.read(64 * 1024):
            yield chunk

    try:
        yield from ijson.items(_IterReader(replay()), prefix, use_float=True)
    except ijson.JSONError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=path) from None


def _jsonl_items(handle: IO[bytes], path: str) -> Iterator[Any]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise click.BadParameter(
                f"line {number} is not valid JSON: {exc}", param_hint=path
            ) from None


class _IterReader:
    """A ``read(n)`` over an iterator of byte chunks, which is all ijson needs."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


# -- batch -----------------------------------------------------------------------------


@click.group()
def batch() -> None:
    """Submit batches of operations, follow them, read their results."""


@batch.command("submit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "jsonl"]),
    default=None,
    help="Override the format the file name suggests (.jsonl: one operation a line)",
)
@click.option("--wait", is_flag=True, help="Wait for the batch to finish, with a progress bar")
@wait_options
@connection_options
def batch_submit(
    file: str, fmt: str | None, wait: bool, timeout: float, url: str | None, api_key: str | None
) -> None:
    """Submit the operations in FILE; print the batch id.

    FILE is .json ({"operations": [...]}) or .jsonl (one operation a line); - reads stdin.
    """
    err = _stderr()
    with _reported(), _client(url, api_key) as client:
        submitted = client.submit(_read_operations(file, fmt))
        click.echo(submitted.id)
        err.print(f"submitted batch {submitted.id}: {submitted.total_operations} operations")
        if wait:
            finished = _wait(client, submitted.id, timeout)
            err.print(_finished_line(finished))
            if finished.errored_operations:
                err.print(f"see them with: conveyor batch results {finished.id} --failed-only")


@batch.command("wait")
@click.argument("batch_id")
@wait_options
@connection_options
def batch_wait(batch_id: str, timeout: float, url: str | None, api_key: str | None) -> None:
    """Wait for BATCH_ID to finish, with a progress bar."""
    with _reported(), _client(url, api_key) as client:
        _stderr().print(_finished_line(_wait(client, batch_id, timeout)))


@batch.command("status")
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="Print the batch as the API returns it")
@connection_options
def batch_status(batch_id: str, as_json: bool, url: str | None, api_key: str | None) -> None:
    """Show one batch."""
    with _reported(), _client(url, api_key) as client:
        found = client.get(batch_id)
    if as_json:
        click.echo(orjson.dumps(found.raw, option=orjson.OPT_INDENT_2).decode())
        return
    rows = [
        ("id", found.id),
        ("status", found.status),
        ("total_operations", str(found.total_operations)),
        ("finished_operations", str(found.finished_operations)),
        ("errored_operations", str(found.errored_operations)),
        ("submitted_at", found.submitted_at),
        ("completed_at", found.completed_at),
        ("response_body_url", found.response_body_url),
    ]
    for name, value in rows:
        click.echo(f"{name:<20} {value}")


@batch.command("list")
@click.option("--count", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One batch per line, as the API returns it")
@connection_options
def batch_list(
    count: int, offset: int, as_json: bool, url: str | None, api_key: str | None
) -> None:
    """List the batches of the last seven days."""
    with _reported(), _client(url, api_key) as client:
        page = client.list(count=count, offset=offset)
    if as_json:
        for item in page.batches:
            click.echo(orjson.dumps(item.raw).decode())
        return
    table = Table("id", "status", "total", "finished", "errored", "submitted_at", "completed_at")
    for item in page.batches:
        table.add_row(
            item.id,
            item.status,
            str(item.total_operations),
            str(item.finished_operations),
            str(item.errored_operations),
            item.submitted_at,
            item.completed_at,
        )
    Console(soft_wrap=True).print(table)
    _stderr().print(f"{len(page.batches)} shown of {page.total_items}")


RESULT_CSV_COLUMNS = ("operation_id", "status_code", "ok", "error", "response")


def _write_results(results: Iterator[BatchResult], fmt: str, out: IO[str]) -> tuple[int, int]:
    total = failed = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(RESULT_CSV_COLUMNS)
    for result in results:
        total += 1
        failed += 0 if result.ok else 1
        if writer is not None:
            writer.writerow(
                (
                    result.operation_id or "",
                    result.status_code,
                    "true" if result.ok else "false",
                    result.error,
                    result.response,
                )
            )
        else:
            line: dict[str, Any] = {
                "operation_id": result.operation_id,
                "status_code": result.status_code,
                "ok": result.ok,
            }
            if not result.ok:
                line["error"] = result.error
            line["body"] = result.body
            out.write(orjson.dumps(line).decode() + "\n")
    return total, failed


@batch.command("results")
@click.argument("batch_id")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option("--failed-only", is_flag=True, help="Only the operations that did not succeed")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file instead of stdout",
)
@click.option("--wait", is_flag=True, help="Wait for the batch to finish first")
@wait_options
@connection_options
def batch_results(
    batch_id: str,
    fmt: str,
    failed_only: bool,
    out: Path | None,
    wait: bool,
    timeout: float,
    url: str | None,
    api_key: str | None,
) -> None:
    """Print the results of a finished batch, each response decoded.

    jsonl: one {"operation_id", "status_code", "ok", "error"?, "body"} per line.
    csv: operation_id, status_code, ok, error, response (the response text as served).
    """
    with _reported(), _client(url, api_key) as client:
        if wait:
            _wait(client, batch_id, timeout)
        with client.results(batch_id, failed_only=failed_only) as results:
            if out is None:
                total, failed = _write_results(results, fmt, sys.stdout)
            else:
                with out.open("w", newline="", encoding="utf-8") as handle:
                    total, failed = _write_results(results, fmt, handle)
    shown = "failed results" if failed_only else f"results, {failed} failed"
    _stderr().print(f"{total} {shown}" + (f"; written to {out}" if out else ""))


@batch.command("cancel")
@click.argument("batch_id")
@connection_options
def batch_cancel(batch_id: str, url: str | None, api_key: str | None) -> None:
    """Stop BATCH_ID. Its results, finished ones included, are discarded."""
    with _reported(), _client(url, api_key) as client:
        client.delete(batch_id)
    _stderr().print(f"cancelled batch {batch_id}; its results are no longer available")


# -- members ---------------------------------------------------------------------------


@click.group()
def members() -> None:
    """Import members from a CSV file through a batch."""


def _finish_import(
    client: Client, job: MemberImport, batch_id: str, out: Path, timeout: float
) -> None:
    err = _stderr()
    finished = _wait(client, batch_id, timeout)
    err.print(_finished_line(finished))
    with client.results(batch_id) as results:
        job.record_results(results)
    summary = job.write_results(out)
    err.print(
        f"{summary.rows} rows: {summary.succeeded} imported, {summary.failed} failed, "
        f"{summary.skipped} skipped; results in {summary.path}"
    )


@members.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--list", "list_id", required=True, help="The audience (list) id")
@click.option(
    "--status",
    "status_if_new",
    type=click.Choice(["subscribed", "unsubscribed", "cleaned", "pending", "transactional"]),
    default="subscribed",
    show_default=True,
    help="Status of addresses new to the list (existing members keep theirs)",
)
@click.option("--wait", is_flag=True, help="Wait, then write the results CSV")
@csv_options
@wait_options
@connection_options
def members_import(
    csv_file: Path,
    list_id: str,
    status_if_new: str,
    wait: bool,
    out: Path | None,
    delimiter: str,
    encoding: str,
    timeout: float,
    url: str | None,
    api_key: str | None,
) -> None:
    """Upsert every row of CSV_FILE into the list as one batch.

    The CSV needs an email (or email_address) column. Upper-case columns such as FNAME or
    LNAME become merge fields; an id column, if present, is each row's operation_id (else the
    row number). With --wait, a results CSV gets one line per row: row, operation_id, email,
    status_code, web_id, error.
    """
    err = _stderr()
    results_path = out or default_results_path(csv_file)
    with (
        _reported(),
        _client(url, api_key) as client,
        MemberImport(
            csv_file,
            list_id=list_id,
            status_if_new=status_if_new,
            delimiter=delimiter,
            encoding=encoding,
        ) as job,
    ):
        if job.columns.ignored:
            err.print(f"ignoring columns: {', '.join(job.columns.ignored)}")
        submitted = client.submit(job.operations())
        click.echo(submitted.id)
        err.print(
            f"submitted batch {submitted.id}: {submitted.total_operations} upserts "
            f"from {job.rows} rows ({job.skipped} without an email address)"
        )
        if not wait:
            err.print(
                f"write the results CSV later with: conveyor members results {csv_file} "
                f"{submitted.id}"
            )
            return
        _finish_import(client, job, submitted.id, results_path, timeout)


@members.command("results")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("batch_id")
@csv_options
@wait_options
@connection_options
def members_results(
    csv_file: Path,
    batch_id: str,
    out: Path | None,
    delimiter: str,
    encoding: str,
    timeout: float,
    url: str | None,
    api_key: str | None,
) -> None:
    """Write the results CSV of an import submitted without --wait (waits if needed)."""
    with (
        _reported(),
        _client(url, api_key) as client,
        MemberImport(csv_file, delimiter=delimiter, encoding=encoding) as job,
    ):
        job.record_rows()
        _finish_import(client, job, batch_id, out or default_results_path(csv_file), timeout)


# -- webhooks --------------------------------------------------------------------------


@click.group()
def webhooks() -> None:
    """Manage batch webhooks: URLs told about every finished batch."""


@webhooks.command("add")
@click.argument("webhook_url")
@click.option("--disabled", is_flag=True, help="Create it switched off")
@connection_options
def webhooks_add(webhook_url: str, disabled: bool, url: str | None, api_key: str | None) -> None:
    """Register WEBHOOK_URL (it must answer GET and POST); print its id."""
    with _reported(), _client(url, api_key) as client:
        created = client.add_webhook(webhook_url, enabled=not disabled)
    click.echo(created.id)
    err = _stderr()
    state = "enabled" if created.enabled else "disabled"
    err.print(f"added batch webhook {created.id} ({state}) for {created.url}")
    if created.secret:
        # Shown once: the API returns the signing secret only on creation.
        err.print("signing secret (shown only now; verify X-Mailchimp-Signature with it):")
        click.echo(created.secret)


@webhooks.command("list")
@click.option("--json", "as_json", is_flag=True, help="One webhook per line, as the API returns")
@connection_options
def webhooks_list(as_json: bool, url: str | None, api_key: str | None) -> None:
    """List the batch webhooks."""
    with _reported(), _client(url, api_key) as client:
        page = client.list_webhooks()
    if as_json:
        for hook in page.webhooks:
            click.echo(orjson.dumps(hook.raw).decode())
        return
    table = Table("id", "url", "enabled")
    for hook in page.webhooks:
        table.add_row(hook.id, hook.url, "yes" if hook.enabled else "no")
    Console(soft_wrap=True).print(table)
    _stderr().print(f"{page.total_items} batch webhooks")


@webhooks.command("rm")
@click.argument("webhook_id")
@connection_options
def webhooks_rm(webhook_id: str, url: str | None, api_key: str | None) -> None:
    """Delete the batch webhook WEBHOOK_ID."""
    with _reported(), _client(url, api_key) as client:
        client.delete_webhook(webhook_id)
    _stderr().print(f"deleted batch webhook {webhook_id}")


def register(group: click.Group) -> None:
    """Add ``batch``, ``members`` and ``webhooks`` to the ``conveyor`` command group."""
    group.add_command(batch)
    group.add_command(members)
    group.add_command(webhooks)
