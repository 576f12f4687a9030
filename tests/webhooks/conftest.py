from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.settings import BatchSettings, Settings
from tests.webhooks.receiver import Receiver, running_receiver


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    # Fast retries so that a failing receiver is retried within the test's time.
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret="test-secret",
        batches=BatchSettings(
            webhook_first_retry_seconds=0.2,
            webhook_max_attempts=5,
            webhook_timeout_seconds=2.0,
            sweep_idle_seconds=1.0,
            sweep_interval_seconds=0.5,
        ),
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running
