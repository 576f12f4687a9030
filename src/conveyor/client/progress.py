"""Progress of a waited-on batch: a rich bar on a terminal, plain lines everywhere else.

A live bar in a CI log or a redirected file is either invisible or a heap of control codes, so
off a terminal each change of status or count is printed as one line instead.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from conveyor.client.models import Batch, ProgressUpdate


class BatchProgress:
    """Callable with each polled :class:`Batch`; close it (or use ``with``) when done."""

    def __init__(self, console: Console | None = None, *, label: str = "batch") -> None:
        self.console = console or Console(stderr=True)
        self.label = label
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last: tuple[str, int, int, int] | None = None

    def __call__(self, batch: Batch) -> None:
        if self.console.is_terminal:
            self._update_bar(batch)
        else:
            self._print_line(batch)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _update_bar(self, batch: Batch) -> None:
        # Mailchimp may report total_operations 0 while a batch is pending; None makes the bar
        # indeterminate (pulsing) instead of claiming 0 of 0 done.
        total = batch.total_operations or None
        description = f"{self.label} {batch.id} [bold]{batch.status}[/]"
        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("[red]{task.fields[errored]} errored"),
                *self._timing_columns(),
                console=self.console,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                description,
                total=total,
                completed=batch.finished_operations,
                errored=0,
                **self._timing_fields(),
            )
        assert self._task is not None
        self._progress.update(
            self._task,
            description=description,
            total=total,
            completed=batch.finished_operations,
            errored=batch.errored_operations,
            **self._timing_fields(),
        )

    def _timing_columns(self) -> list[ProgressColumn]:
        # Polled: rich's own estimate from the counts it is shown.
        return [TimeElapsedColumn(), TimeRemainingColumn()]

    def _timing_fields(self) -> dict[str, Any]:
        return {}

    def _print_line(self, batch: Batch) -> None:
        state = (
            batch.status,
            batch.finished_operations,
            batch.total_operations,
            batch.errored_operations,
        )
        if state == self._last:
            return
        self._last = state
        timing = ", ".join(str(text) for text in self._timing_fields().values() if text)
        self.console.print(
            f"{self.label} {batch.id}: {batch.status}, {batch.finished_operations}/"
            f"{batch.total_operations} operations finished, {batch.errored_operations} errored"
            + (f", {timing}" if timing else ""),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


class WatchProgress(BatchProgress):
    """Progress driven by a batch's events: the server's own rate and ETA beside the bar."""

    def __init__(self, console: Console | None = None, *, label: str = "batch") -> None:
        super().__init__(console, label=label)
        self._rate: float | None = None
        self._eta: float | None = None

    def show(self, update: ProgressUpdate) -> None:
        self._rate = update.ops_per_second
        self._eta = update.eta_seconds
        self(update.batch)

    def _timing_columns(self) -> list[ProgressColumn]:
        return [
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[eta]}"),
            TimeElapsedColumn(),
        ]

    def _timing_fields(self) -> dict[str, Any]:
        return {"rate": _rate_text(self._rate), "eta": _eta_text(self._eta)}


def _rate_text(ops_per_second: float | None) -> str:
    return f"{ops_per_second:,.0f} ops/s" if ops_per_second else ""


def _eta_text(seconds: float | None) -> str:
    if seconds is None or seconds <= 0:
        return ""
    minutes, rest = divmod(round(seconds), 60)
    return f"ETA {minutes}m{rest:02d}s" if minutes else f"ETA {rest}s"
