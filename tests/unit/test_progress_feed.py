"""The progress feed over scripted reads of a batch row: an event per change, never one for a
reading that changed nothing, then `finished` (or `deleted`) and the end."""

from __future__ import annotations

from collections.abc import Iterator

import anyio

from conveyor.batches.progress_feed import ProgressEvent, ProgressEventKind, ProgressFeed
from conveyor.domain.clock import FixedClock
from conveyor.storage.batches import BatchRow


def row(status: str, finished: int, *, canceled: bool = False) -> BatchRow:
    return BatchRow(
        id="0123456789",
        account_pk=1,
        status=status,
        total_operations=100,
        finished_operations=finished,
        errored_operations=0,
        submitted_at="2026-01-01T00:00:00+00:00",
        completed_at="",
        api_root="http://x/3.0",
        archive_key=None,
        canceled_at="2026-01-01T00:00:09+00:00" if canceled else None,
    )


def run(readings: list[BatchRow | None]) -> list[ProgressEvent]:
    clock = FixedClock()
    script: Iterator[BatchRow | None] = iter(readings)

    def read() -> BatchRow | None:
        clock.advance(1.0)  # a second between readings
        return next(script)

    feed = ProgressFeed(read, clock, read_in_thread=False, interval_seconds=0)

    async def collect() -> list[ProgressEvent]:
        return [event async for event in feed.events()]

    return anyio.run(collect)


def test_an_event_per_change_then_finished() -> None:
    events = run(
        [
            row("pending", 0),
            row("pending", 0),
            row("started", 10),
            row("started", 10),
            row("started", 30),
            row("finalizing", 100),
            row("finished", 100),
        ]
    )
    kinds = [event.kind for event in events]
    assert kinds == [ProgressEventKind.PROGRESS] * 4 + [ProgressEventKind.FINISHED]
    assert [event.batch.finished_operations for event in events if event.batch] == [
        0, 10, 30, 100, 100,
    ]  # fmt: skip
    # 30 done four seconds after the first reading: 7.5/s, 70 left.
    assert events[2].rate.ops_per_second == 7.5
    assert events[2].rate.eta_seconds == round(70 / 7.5, 1)
    assert events[-1].rate.eta_seconds == 0.0


def test_a_canceled_batch_has_nothing_left() -> None:
    events = run([row("finalizing", 20, canceled=True), row("finished", 20, canceled=True)])
    assert [event.rate.eta_seconds for event in events] == [0.0, 0.0]


def test_a_batch_deleted_while_watched_ends_the_feed() -> None:
    events = run([row("started", 10), None])
    assert [event.kind for event in events] == [
        ProgressEventKind.PROGRESS,
        ProgressEventKind.DELETED,
    ]
    assert events[-1].batch is None
