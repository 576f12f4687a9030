"""``conveyor batch``, ``conveyor members``, ``conveyor webhooks`` and ``conveyor lists``: the
client's commands.

Results and ids go to stdout, so they can be piped; progress, summaries and errors go to
stderr. Every wait shows a rich progress bar (plain lines when stderr is not a terminal).
Every command needs a target: ``--url`` (or ``CONVEYOR_URL``) for a Conveyor server, or
``--mailchimp`` for Mailchimp itself; commands that write print it first.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import click
import orjson
from rich.table import Table

from conveyor.client.cli_common import (
    CommandError,
    Interrupted,
    NotOnMailchimp,
    SomeRowsFailed,
    Target,
    connection_options,
    describe_target,
    echo_json,
    json_option,
    plural,
    reported,
    stderr,
    stdout_console,
    wait_options,
)
from conveyor.client.client import Client
from conveyor.client.errors import ConveyorApiError
from conveyor.client.member_import import (
    ImportSummary,
    MemberImport,
    default_results_path,
)
from conveyor.client.models import Batch, BatchResult
from conveyor.client.operations_file import read_operations
from conveyor.client.progress import BatchProgress, WatchProgress


def _wait(client: Client, batch_id: str, timeout: float) -> Batch:
    try:
        with BatchProgress(stderr()) as progress:
            return client.wait(batch_id, timeout=timeout, progress=progress)
    except KeyboardInterrupt:
        # Ctrl-C stops the waiting, not the batch: say so, and how to pick it up again.
        raise Interrupted(
            f"stopped waiting; batch {batch_id} runs on (follow it: conveyor batch wait {batch_id})"
        ) from None


def _finished_line(batch: Batch) -> str:
    return (
        f"batch {batch.id} finished: {plural(batch.total_operations, 'operation')}, "
        f"{batch.succeeded_operations} succeeded, {batch.errored_operations} errored"
    )


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
    help="Override the format the file name or its content suggests",
)
@click.option("--wait", is_flag=True, help="Wait for the batch to finish, with a progress bar")
@json_option("Print the batch (the finished one with --wait) as JSON instead of its id")
@wait_options
@connection_options
def batch_submit(
    file: str, fmt: str | None, wait: bool, as_json: bool, timeout: float, target: Target
) -> None:
    """Submit the operations in FILE; print the batch id.

    FILE holds a JSON document ({"operations": [...]} or an array) or JSON lines (one
    operation a line); - reads stdin. .json and .jsonl say which; otherwise the content does.
    """
    err = stderr()
    with reported(), target.client(writes=True) as client:
        submitted = client.submit(read_operations(file, fmt))
        if not as_json:
            click.echo(submitted.id)
        err.print(
            f"submitted batch {submitted.id}: {plural(submitted.total_operations, 'operation')}"
        )
        shown = submitted
        if wait:
            shown = _wait(client, submitted.id, timeout)
            err.print(_finished_line(shown))
            if shown.errored_operations:
                err.print(f"see them with: conveyor batch results {shown.id} --failed-only")
    if as_json:
        echo_json(shown.raw)


@batch.command("wait")
@click.argument("batch_id")
@json_option("Print the finished batch as JSON")
@wait_options
@connection_options
def batch_wait(batch_id: str, as_json: bool, timeout: float, target: Target) -> None:
    """Wait for BATCH_ID to finish, with a progress bar."""
    with reported(), target.client() as client:
        finished = _wait(client, batch_id, timeout)
    stderr().print(_finished_line(finished))
    if as_json:
        echo_json(finished.raw)


@batch.command("status")
@click.argument("batch_id")
@json_option("Print the batch as the API returns it")
@connection_options
def batch_status(batch_id: str, as_json: bool, target: Target) -> None:
    """Show one batch."""
    with reported(), target.client() as client:
        found = client.get(batch_id)
    if as_json:
        echo_json(found.raw, indent=True)
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
@json_option("One batch per line, as the API returns it")
@connection_options
def batch_list(count: int, offset: int, as_json: bool, target: Target) -> None:
    """List the batches of the last seven days."""
    with reported(), target.client() as client:
        page = client.list(count=count, offset=offset)
    if as_json:
        for item in page.batches:
            echo_json(item.raw)
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
    stdout_console().print(table)
    stderr().print(f"{len(page.batches)} shown of {page.total_items}")


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
    target: Target,
) -> None:
    """Print the results of a finished batch, each response decoded.

    jsonl (JSON lines, the default): one {"operation_id", "status_code", "ok", "error"?,
    "body"} per line. csv: operation_id, status_code, ok, error, response (as served).
    """
    with reported(), target.client() as client:
        if wait:
            _wait(client, batch_id, timeout)
        with client.results(batch_id, failed_only=failed_only) as results:
            if out is None:
                total, failed = _write_results(results, fmt, sys.stdout)
            else:
                with out.open("w", newline="", encoding="utf-8") as handle:
                    total, failed = _write_results(results, fmt, handle)
    shown = (
        plural(total, "failed result")
        if failed_only
        else f"{plural(total, 'result')}, {failed} failed"
    )
    stderr().print(shown + (f"; written to {out}" if out else ""))


@batch.command("cancel")
@click.argument("batch_id")
@connection_options
def batch_cancel(batch_id: str, target: Target) -> None:
    """Stop BATCH_ID and keep what ran (a Conveyor extension).

    Operations already run keep their results, in the archive and the operations view; the
    rest never run. On Mailchimp, `conveyor batch delete` is the only way to stop a batch.
    """
    with reported(), target.client(writes=True) as client:
        if client.is_mailchimp:
            raise NotOnMailchimp(
                "Mailchimp cannot cancel a batch and keep its results; "
                f"`conveyor batch delete {batch_id} --mailchimp` stops it and discards them"
            )
        stopped = client.cancel(batch_id)
    stderr().print(
        f"canceled batch {stopped.id}: {plural(stopped.finished_operations, 'operation')} ran "
        f"and keep their results, {stopped.errored_operations} errored"
    )


@batch.command("delete")
@click.argument("batch_id")
@connection_options
def batch_delete(batch_id: str, target: Target) -> None:
    """Stop BATCH_ID and discard it, finished results included (Mailchimp's DELETE)."""
    with reported(), target.client(writes=True) as client:
        client.delete(batch_id)
    stderr().print(f"deleted batch {batch_id}; its results are no longer available")


@batch.command("ops")
@click.argument("batch_id")
@click.option("--failed", is_flag=True, help="Only the operations that failed")
@click.option(
    "--status",
    type=click.Choice(["pending", "succeeded", "failed"]),
    default=None,
    help="Only the operations in this state",
)
@click.option("--operation-id", default=None, help="Only the operations with this operation_id")
@json_option("Print one JSON object per line, as the API returns each operation")
@connection_options
def batch_ops(
    batch_id: str,
    failed: bool,
    status: str | None,
    operation_id: str | None,
    as_json: bool,
    target: Target,
) -> None:
    """List BATCH_ID's operations with their results, while it runs too (a Conveyor extension)."""
    if failed and status not in (None, "failed"):
        raise click.UsageError("--failed and --status name two states: give one")
    wanted = "failed" if failed else status
    shown = 0
    with reported(), target.client() as client:
        for item in client.operations(batch_id, status=wanted, operation_id=operation_id):
            shown += 1
            if as_json:
                echo_json(item.raw)
                continue
            code = "-" if item.status_code is None else str(item.status_code)
            line = f"{item.seq:>7}  {item.status:<9} {code:>3}  {item.operation_id or '-'}"
            line += f"  {item.method} {item.path}"
            if item.error:
                line += f"  {item.error}"
            click.echo(line)
    if not as_json:
        stderr().print(plural(shown, "operation"))


@batch.command("retry")
@click.argument("batch_id")
@click.option(
    "--status-code",
    "status_codes",
    type=click.IntRange(100, 599),
    multiple=True,
    help="Only failures with this status code (repeatable); all failures by default",
)
@click.option("--wait", is_flag=True, help="Wait for the new batch to finish")
@json_option("Print the new batch as the API returns it")
@wait_options
@connection_options
def batch_retry(
    batch_id: str,
    status_codes: tuple[int, ...],
    wait: bool,
    as_json: bool,
    timeout: float,
    target: Target,
) -> None:
    """Submit BATCH_ID's failed operations again as a new batch (a Conveyor extension)."""
    with reported(), target.client(writes=True) as client:
        retried = client.retry_failed(batch_id, status_codes=status_codes or None)
        if wait:
            retried = _wait(client, retried.id, timeout)
    if as_json:
        echo_json(retried.raw, indent=True)
    else:
        click.echo(retried.id)
        stderr().print(
            f"batch {retried.id} retries {plural(retried.total_operations, 'operation')} "
            f"of batch {batch_id}"
        )


@batch.command("watch")
@click.argument("batch_id")
@connection_options
def batch_watch(batch_id: str, target: Target) -> None:
    """Follow BATCH_ID live until it finishes: a progress bar with rate and ETA.

    Driven by the server's progress events (a Conveyor extension); `conveyor batch wait`
    polls instead, and works on Mailchimp too.
    """
    last: Batch | None = None
    with reported(), target.client() as client, WatchProgress(stderr()) as progress:
        try:
            for update in client.watch(batch_id):
                if update.event == "deleted":
                    # No end to report, and a script must not take it for one.
                    raise CommandError(f"batch {batch_id} was deleted while it was watched")
                progress.show(update)
                last = update.batch
        except KeyboardInterrupt:
            raise Interrupted(f"stopped watching; batch {batch_id} runs on") from None
    if last is not None:
        stderr().print(_finished_line(last))


# -- members ---------------------------------------------------------------------------


@click.group()
def members() -> None:
    """Import members from a CSV file or sync them from a database, through batches."""


def csv_options(func: Any) -> Any:
    """How to read the input CSV and where to write the results one, for import and results."""
    func = click.option(
        "--encoding",
        default="utf-8-sig",
        show_default=True,
        help="The CSV's text encoding (cp1252 for many Excel exports)",
    )(func)
    func = click.option(
        "--delimiter",
        default=",",
        show_default=True,
        callback=lambda _ctx, _param, value: "\t" if value in ("tab", "\\t") else value,
        help="The CSV's field separator (tab for a tab)",
    )(func)
    return click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Results CSV path [default: <input>.results.csv beside the input]",
    )(func)


def _finish_import(
    client: Client, job: MemberImport, batch_id: str, out: Path, timeout: float
) -> ImportSummary:
    err = stderr()
    finished = _wait(client, batch_id, timeout)
    err.print(_finished_line(finished))
    with client.results(batch_id) as results:
        job.record_results(results)
    summary = job.write_results(out)
    err.print(
        f"{plural(summary.rows, 'row')}: {summary.succeeded} imported, {summary.failed} failed, "
        f"{summary.skipped} skipped; results in {summary.path}"
    )
    return summary


def _summary_json(summary: ImportSummary, batch_id: str) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "rows": summary.rows,
        "imported": summary.succeeded,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "results_csv": str(summary.path),
    }


def _fail_if_rows_failed(summary: ImportSummary) -> None:
    if summary.failed or summary.skipped:
        raise SomeRowsFailed(
            f"{plural(summary.failed + summary.skipped, 'row')} did not go in; see {summary.path}"
        )


def _merge_fields_of(client: Client, list_id: str) -> dict[str, str]:
    """The list's merge fields, by folded tag and by folded name: FNAME and "First Name"."""
    data = client.request(
        "GET",
        f"lists/{_segment(list_id)}/merge-fields",
        params={"count": 1000, "fields": "merge_fields.tag,merge_fields.name"},
    )
    known: dict[str, str] = {}
    for field in data.get("merge_fields") or []:
        tag = str(field.get("tag") or "")
        if tag:
            known.setdefault(tag.lower(), tag)
            known.setdefault(str(field.get("name") or "").strip().lower(), tag)
    known.pop("", None)
    return known


def _segment(value: str) -> str:
    return quote(value, safe="")


def check_list(client: Client, list_id: str) -> None:
    """Before anything is sent: the list must exist, or every row would fail alike."""
    try:
        client.request("GET", f"lists/{_segment(list_id)}", params={"fields": "id"})
    except ConveyorApiError as exc:
        if exc.status == 404:
            raise click.ClickException(
                f"there is no audience (list) {list_id!r} on {describe_target(client)}; "
                "see them with: conveyor lists list"
            ) from None
        raise


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
@json_option("Print a JSON summary (batch id, counts, results CSV) instead of the batch id")
@csv_options
@wait_options
@connection_options
def members_import(
    csv_file: Path,
    list_id: str,
    status_if_new: str,
    wait: bool,
    as_json: bool,
    out: Path | None,
    delimiter: str,
    encoding: str,
    timeout: float,
    target: Target,
) -> None:
    """Upsert every row of CSV_FILE into the list as one batch.

    The CSV needs an email column (email, email_address or Mailchimp's "Email Address").
    Columns named like one of the list's merge fields, by tag (FNAME) or by name ("First
    Name"), fill it; an id column, if present, is each row's operation_id (else the row
    number). With --wait, a results CSV gets one line per row: row, operation_id, email,
    status_code, web_id, error; the exit status is 1 if any row did not go in.
    """
    err = stderr()
    results_path = out or default_results_path(csv_file)
    with reported(), target.client(writes=True) as client:
        check_list(client, list_id)
        known = _merge_fields_of(client, list_id)
        with MemberImport(
            csv_file,
            list_id=list_id,
            status_if_new=status_if_new,
            delimiter=delimiter,
            encoding=encoding,
            merge_fields=known,
        ) as job:
            if job.columns.ignored:
                err.print(
                    "ignoring columns that match no merge field of the list: "
                    + ", ".join(job.columns.ignored)
                )
            submitted = client.submit(job.operations())
            if not as_json:
                click.echo(submitted.id)
            err.print(
                f"submitted batch {submitted.id}: {plural(submitted.total_operations, 'upsert')} "
                f"from {plural(job.rows, 'row')} ({job.skipped} without an email address)"
            )
            if not wait:
                err.print(
                    f"write the results CSV later with: conveyor members results {csv_file} "
                    f"{submitted.id}"
                )
                if as_json:
                    echo_json(
                        {
                            "batch_id": submitted.id,
                            "rows": job.rows,
                            "upserts": submitted.total_operations,
                            "skipped": job.skipped,
                        }
                    )
                return
            summary = _finish_import(client, job, submitted.id, results_path, timeout)
    if as_json:
        echo_json(_summary_json(summary, submitted.id))
    _fail_if_rows_failed(summary)


@members.command("results")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("batch_id")
@json_option("Print a JSON summary of the results")
@csv_options
@wait_options
@connection_options
def members_results(
    csv_file: Path,
    batch_id: str,
    as_json: bool,
    out: Path | None,
    delimiter: str,
    encoding: str,
    timeout: float,
    target: Target,
) -> None:
    """Write the results CSV of an import submitted without --wait (waits if needed)."""
    with (
        reported(),
        target.client() as client,
        MemberImport(csv_file, delimiter=delimiter, encoding=encoding) as job,
    ):
        job.record_rows()
        summary = _finish_import(
            client, job, batch_id, out or default_results_path(csv_file), timeout
        )
    if as_json:
        echo_json(_summary_json(summary, batch_id))
    _fail_if_rows_failed(summary)


# -- webhooks --------------------------------------------------------------------------


@click.group()
def webhooks() -> None:
    """Manage batch webhooks: URLs told about every finished batch."""


@webhooks.command("add")
@click.argument("webhook_url")
@click.option("--disabled", is_flag=True, help="Create it switched off")
@json_option("Print the webhook as JSON (with its signing secret)")
@connection_options
def webhooks_add(webhook_url: str, disabled: bool, as_json: bool, target: Target) -> None:
    """Register WEBHOOK_URL (it must answer GET and POST); print its id."""
    with reported(), target.client(writes=True) as client:
        created = client.add_webhook(webhook_url, enabled=not disabled)
    if as_json:
        echo_json(created.raw)
        return
    click.echo(created.id)
    err = stderr()
    state = "enabled" if created.enabled else "disabled"
    err.print(f"added batch webhook {created.id} ({state}) for {created.url}")
    if created.secret:
        # Shown once: the API returns the signing secret only on creation.
        err.print("signing secret (shown only now; verify X-Mailchimp-Signature with it):")
        click.echo(created.secret)


@webhooks.command("list")
@json_option("One webhook per line, as the API returns it")
@connection_options
def webhooks_list(as_json: bool, target: Target) -> None:
    """List the batch webhooks."""
    with reported(), target.client() as client:
        page = client.list_webhooks()
    if as_json:
        for hook in page.webhooks:
            echo_json(hook.raw)
        return
    table = Table("id", "url", "enabled")
    for hook in page.webhooks:
        table.add_row(hook.id, hook.url, "yes" if hook.enabled else "no")
    stdout_console().print(table)
    stderr().print(plural(page.total_items, "batch webhook"))


@webhooks.command("deliveries")
@click.argument("webhook_id")
@click.option("--count", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@json_option("One delivery per line, with every attempt, as the API returns it")
@connection_options
def webhooks_deliveries(
    webhook_id: str, count: int, offset: int, as_json: bool, target: Target
) -> None:
    """Show the deliveries of WEBHOOK_ID: each batch reported, its state and attempts.

    A Conveyor server keeps this log; Mailchimp has no such endpoint.
    """
    with reported(), target.client() as client:
        data = client.request(
            "GET",
            f"batch-webhooks/{_segment(webhook_id)}/deliveries",
            params={"count": count, "offset": offset},
        )
    deliveries = data.get("deliveries") or []
    if as_json:
        for delivery in deliveries:
            echo_json(delivery)
        return
    table = Table("attempts", "last status", "delivered_at", "last error")
    table.add_column("state", no_wrap=True)
    # Ids are what people copy: never cut, whatever the terminal's width.
    table.add_column("batch", no_wrap=True, min_width=10)
    table.add_column("id", no_wrap=True, min_width=10)
    for item in deliveries:
        table.add_row(
            str(item.get("attempts", "")),
            str(item.get("last_status_code") or ""),
            str(item.get("delivered_at") or ""),
            str(item.get("last_error") or ""),
            str(item.get("state", "")),
            str(item.get("batch_id", "")),
            str(item.get("id", "")),
        )
    stdout_console().print(table)
    total = plural(int(data.get("total_items") or 0), "delivery", "deliveries")
    stderr().print(f"{len(deliveries)} shown of {total}")


@webhooks.command("rm")
@click.argument("webhook_id")
@connection_options
def webhooks_rm(webhook_id: str, target: Target) -> None:
    """Delete the batch webhook WEBHOOK_ID."""
    with reported(), target.client(writes=True) as client:
        client.delete_webhook(webhook_id)
    stderr().print(f"deleted batch webhook {webhook_id}")


def register(group: click.Group) -> None:
    """Add ``batch``, ``members``, ``webhooks`` and ``lists`` to the ``conveyor`` group."""
    from conveyor.client.cli_lists import lists
    from conveyor.client.cli_sync import members_sync

    members.add_command(members_sync)
    group.add_command(batch)
    group.add_command(members)
    group.add_command(webhooks)
    group.add_command(lists)
