"""The server's garbage-collector settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from conveyor.runtime.gc_tuning import YOUNG_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_freezes_what_exists_and_passes_less_often(restored_collector: None) -> None:
    middle, old = gc.get_threshold()[1:]
    built_at_start: list[int] = []  # a container: one the collector tracks
    assert any(item is built_at_start for item in gc.get_objects())
    tune_garbage_collector()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    assert gc.get_freeze_count() > 0
    # Frozen objects are in no generation: collections no longer visit them.
    assert not any(item is built_at_start for item in gc.get_objects())
