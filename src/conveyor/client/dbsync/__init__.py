"""Sync contacts from a SQL database into an audience, with each member's web_id saved back.

    from conveyor.client import Client, sync

    with Client(key, base_url="http://127.0.0.1:8000") as client:
        summary = sync(
            client,
            "postgresql://app@db/crm",
            "SELECT id, email, first_name, updated_at FROM contacts",
            list_id,
            merge_map={"first_name": "FNAME"},
            since_column="updated_at",
            state_file=Path("contacts.sync.json"),
            write_back="UPDATE contacts SET web_id = :web_id, sync_error = :error WHERE id = :id",
        )

See docs/sync.md for every option.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.client.dbsync.errors import SyncError
from conveyor.client.dbsync.progress import ConsoleSyncReporter, SyncReporter
from conveyor.client.dbsync.runner import SyncOptions, SyncSummary, run_sync

if TYPE_CHECKING:
    from conveyor.client.client import Client


def sync(
    client: Client,
    source_url: str,
    query: str,
    list_id: str,
    *,
    progress: bool | SyncReporter = False,
    **options: Any,
) -> SyncSummary:
    """Upsert the rows of ``query`` on ``source_url`` into ``list_id``; see :class:`SyncOptions`
    for the keyword options. ``progress=True`` shows a rich progress bar on stderr."""
    for name in ("state_file", "errors_file"):
        if isinstance(options.get(name), str):
            options[name] = Path(options[name])
    chosen = SyncOptions(source_url=source_url, query=query, list_id=list_id, **options)
    reporter: SyncReporter | None
    if progress is True:
        reporter = ConsoleSyncReporter()
    elif isinstance(progress, SyncReporter):
        reporter = progress
    else:
        reporter = None
    return run_sync(client, chosen, reporter)


__all__ = [
    "ConsoleSyncReporter",
    "SyncError",
    "SyncOptions",
    "SyncReporter",
    "SyncSummary",
    "run_sync",
    "sync",
]
