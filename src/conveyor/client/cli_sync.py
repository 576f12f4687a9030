"""``conveyor members sync``: contacts from a SQL database into an audience, web_ids back."""

from __future__ import annotations

from pathlib import Path

import click

from conveyor.client.cli_common import (
    Interrupted,
    SomeRowsFailed,
    Target,
    connection_options,
    echo_json,
    json_option,
    plural,
    reported,
    stderr,
)
from conveyor.client.client import DEFAULT_WAIT_TIMEOUT
from conveyor.client.dbsync import ConsoleSyncReporter, SyncOptions, SyncSummary, run_sync
from conveyor.client.dbsync.mapping import MEMBER_STATUSES, MappingError, parse_map_option
from conveyor.client.dbsync.runner import DEFAULT_CHUNK_SIZE, DEFAULT_WRITE_BACK_SIZE

ENV_SOURCE = "CONVEYOR_SYNC_FROM"


@click.command("sync")
@click.option(
    "--from",
    "source_url",
    envvar=ENV_SOURCE,
    required=True,
    help="The source database: postgresql://…, mysql+pymysql://…, sqlite:///file.db "
    f"[env {ENV_SOURCE}, which keeps a password out of the shell history]",
)
@click.option("--query", required=True, help="The SELECT that returns the contacts")
@click.option("--list", "list_id", required=True, help="The audience (list) id")
@click.option("--email-column", default="email", show_default=True)
@click.option(
    "--map",
    "merge_map",
    multiple=True,
    metavar="COLUMN=TAG",
    help="A column into a merge field (first_name=FNAME); upper-case columns map by name",
)
@click.option("--key-column", default="id", show_default=True, help="A unique key per row")
@click.option(
    "--since-column",
    default=None,
    help="Send only rows changed since the last run (like updated_at); needs a state",
)
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Keep how far the sync got in this JSON file",
)
@click.option(
    "--state-table", default=None, help="…or in this table of the source database (created)"
)
@click.option(
    "--write-back",
    default=None,
    help="A statement run for every result: :web_id, :member_id, :unique_email_id, "
    ":status_code, :error and every column (:id) as named parameters",
)
@click.option(
    "--errors",
    "errors_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append failed rows to this file (JSON lines)",
)
@click.option(
    "--status",
    "status_if_new",
    type=click.Choice(MEMBER_STATUSES),
    default="subscribed",
    show_default=True,
    help="Status of new addresses when the row has no status column",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=DEFAULT_CHUNK_SIZE,
    show_default=True,
    help="Rows per batch",
)
@click.option(
    "--write-back-size",
    type=click.IntRange(min=1),
    default=DEFAULT_WRITE_BACK_SIZE,
    show_default=True,
    help="Rows per write-back transaction",
)
@click.option(
    "--webhook-listen",
    metavar="HOST:PORT",
    default=None,
    help="Wait for batches by webhook on a receiver at this address, not by polling",
)
@click.option("--webhook-url", default=None, help="The receiver's address as the server sees it")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_WAIT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each batch",
)
@json_option("Print the summary as JSON on stdout")
@connection_options
def members_sync(
    source_url: str,
    query: str,
    list_id: str,
    email_column: str,
    merge_map: tuple[str, ...],
    key_column: str,
    since_column: str | None,
    state_file: Path | None,
    state_table: str | None,
    write_back: str | None,
    errors_file: Path | None,
    status_if_new: str,
    chunk_size: int,
    write_back_size: int,
    webhook_listen: str | None,
    webhook_url: str | None,
    timeout: float,
    as_json: bool,
    target: Target,
) -> None:
    """Upsert the rows of a SQL query into a list, and save each member's web_id back.

    Columns: email, status (for new addresses), tags (comma-separated), merge fields by tag
    (FNAME) or --map. One batch per --chunk-size rows; with --since-column and --state (or
    --state-table) a second run sends only what changed, and an interrupted run resumes
    without sending anything twice. Exit status 1 if any row failed. See docs/sync.md.
    """
    try:
        mapped = parse_map_option(merge_map)
    except MappingError as exc:
        raise click.BadParameter(str(exc), param_hint="--map") from None
    options = SyncOptions(
        source_url=source_url,
        query=query,
        list_id=list_id,
        email_column=email_column,
        merge_map=mapped,
        key_column=key_column,
        since_column=since_column,
        state_file=state_file,
        state_table=state_table,
        write_back=write_back,
        errors_file=errors_file,
        chunk_size=chunk_size,
        write_back_size=write_back_size,
        status_if_new=status_if_new,
        webhook_listen=webhook_listen,
        webhook_url=webhook_url,
        timeout=timeout,
    )
    err = stderr()
    with reported(), target.client(writes=True) as client:
        try:
            summary = run_sync(client, options, ConsoleSyncReporter(err))
        except KeyboardInterrupt:
            raise Interrupted(
                "interrupted; what was done is recorded: run the same command again to resume"
                if state_file or state_table
                else "interrupted (without --state, a new run starts over)"
            ) from None
    err.print(_summary_line(summary))
    if as_json:
        echo_json(summary.as_dict())
    if not summary.ok:
        where = summary.errors_file or "the write-back"
        raise SomeRowsFailed(f"{plural(summary.failed, 'row')} failed; see {where}")


def _summary_line(summary: SyncSummary) -> str:
    resumed = f", {summary.resumed_chunks} resumed" if summary.resumed_chunks else ""
    return (
        f"{plural(summary.rows_read, 'row')} read, {plural(summary.chunks, 'chunk')}{resumed}, "
        f"{plural(len(summary.batch_ids), 'batch', 'batches')}: {summary.succeeded} succeeded, "
        f"{summary.failed} failed ({summary.without_email} without an email address) "
        f"in {summary.seconds:.1f} s"
    )
