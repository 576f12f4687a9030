"""The ingest's page writer (batches/service.py): pages stored in order, one at a time, in a
worker thread, with the parser at most `depth` pages ahead."""

from __future__ import annotations

import threading

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.batches.service import _PageWriter
from conveyor.domain.operations import Operation


def page(first_seq: int) -> list[Operation]:
    return [Operation("GET", "/ping", {}, None, f"op-{first_seq}")]


class Recorder:
    """A store that records what it wrote, checks that writes never overlap, and can be
    made to fail on one page or to hold every write until released."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.written: list[int] = []
        self.fail_at = fail_at
        self.release = threading.Event()
        self.release.set()
        self._busy = threading.Lock()

    def __call__(self, batch_id: str, first_seq: int, operations: list[Operation]) -> None:
        assert self._busy.acquire(blocking=False), "two pages written at once"
        try:
            self.release.wait(5)
            if first_seq == self.fail_at:
                raise RuntimeError(f"page {first_seq} refused")
            self.written.append(first_seq)
        finally:
            self._busy.release()


async def write_pages(writer: _PageWriter, pages: int) -> None:
    # As the ingest does: the failure is raised outside the task group, unwrapped.
    failure: Exception | None = None
    async with anyio.create_task_group() as tasks:
        try:
            for index in range(pages):
                await writer.start(tasks, "b", index, page(index))
            await writer.wait()
        except Exception as exc:
            failure = exc
    if failure is not None:
        raise failure


@settings(max_examples=40, deadline=None)
@given(pages=st.integers(0, 12), depth=st.integers(1, 4))
def test_every_page_is_written_once_in_order(pages: int, depth: int) -> None:
    store = Recorder()
    anyio.run(write_pages, _PageWriter(store, depth=depth), pages)
    assert store.written == list(range(pages))


@settings(max_examples=40, deadline=None)
@given(pages=st.integers(1, 12), depth=st.integers(1, 4), data=st.data())
def test_a_failed_page_stops_the_pages_after_it_and_is_raised(
    pages: int, depth: int, data: st.DataObject
) -> None:
    fail_at = data.draw(st.integers(0, pages - 1))
    store = Recorder(fail_at)
    with pytest.raises(RuntimeError, match=f"page {fail_at} refused"):
        anyio.run(write_pages, _PageWriter(store, depth=depth), pages)
    assert store.written == list(range(fail_at))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_parser_runs_at_most_depth_pages_ahead(depth: int) -> None:
    store = Recorder()
    store.release.clear()  # every write waits
    started: list[int] = []

    async def main() -> None:
        writer = _PageWriter(store, depth=depth)
        async with anyio.create_task_group() as tasks:

            async def parse() -> None:
                for index in range(depth + 2):
                    await writer.start(tasks, "b", index, page(index))
                    started.append(index)
                await writer.wait()

            tasks.start_soon(parse)
            await wait_all_tasks_blocked()
            # `depth` pages handed over; the next `start` waits for the first to be written.
            assert started == list(range(depth))
            store.release.set()

    anyio.run(main)
    assert started == list(range(depth + 2))
    assert store.written == list(range(depth + 2))
