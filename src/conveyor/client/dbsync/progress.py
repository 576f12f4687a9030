"""What a sync tells the person running it: a rich progress bar from rows read to results
written on a terminal, one line per step everywhere else (logs, CI, files)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from conveyor.client.models import Batch


class SyncReporter:
    """Receives every step of a sync; this base class shows nothing."""

    def started(self, total: int | None, state: str) -> None:
        pass

    def read(self, rows: int) -> None:
        pass

    def submitted(self, seq: int, kind: str, batch: Batch, replayed: bool) -> None:
        pass

    def batch(self, batch: Batch) -> None:
        pass

    def written(self, succeeded: int, failed: int) -> None:
        pass

    def chunk_done(self, seq: int, rows: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class ConsoleSyncReporter(SyncReporter):
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._live = self.console.is_terminal
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._written = self._failed = 0

    def _print(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def started(self, total: int | None, state: str) -> None:
        shown = "unknown" if total is None else str(total)
        self._print(f"{shown} rows to sync (state: {state})")
        if not self._live:
            return
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._progress.start()
        for name in ("rows read", "operations done", "results written"):
            self._tasks[name] = self._progress.add_task(name, total=total, failed="")

    def read(self, rows: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._tasks["rows read"], rows)

    def submitted(self, seq: int, kind: str, batch: Batch, replayed: bool) -> None:
        again = " (the server already had it: not sent twice)" if replayed else ""
        self._print(
            f"chunk {seq}: {kind} batch {batch.id} submitted, "
            f"{_plural(batch.total_operations, 'operation')}{again}"
        )

    def batch(self, batch: Batch) -> None:
        if self._progress is None:
            return
        task = self._tasks["operations done"]
        # Each chunk's batch starts from 0: the bar shows the batch, its total the batch's.
        self._progress.update(
            task,
            total=batch.total_operations or None,
            completed=batch.finished_operations,
            failed=f"{batch.errored_operations} errored" if batch.errored_operations else "",
            description=f"batch {batch.id}",
        )

    def written(self, succeeded: int, failed: int) -> None:
        self._written += succeeded + failed
        self._failed += failed
        if self._progress is not None:
            self._progress.update(
                self._tasks["results written"],
                advance=succeeded + failed,
                failed=f"{self._failed} failed" if self._failed else "",
            )

    def chunk_done(self, seq: int, rows: int) -> None:
        # Off a terminal, one line per chunk: a log of a million rows stays readable.
        if self._progress is None:
            self._print(
                f"chunk {seq} written back ({_plural(rows, 'row')}); {self._written} results "
                f"written in all, {self._failed} failed"
            )

    def note(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
