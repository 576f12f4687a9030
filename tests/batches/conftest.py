"""Fixtures for the Batch endpoint suite (the shared ones live in tests/conftest.py).

The batch settings are shrunk so that small batches still cross every boundary the
defaults put at thousands: several chunks, several groups per chunk, several archive files,
several pages for a GET without `count`, several ingest pages. A test changes them with
`@pytest.mark.batch_settings(field=value, ...)` and the top-level settings with
`@pytest.mark.settings(field=value, ...)`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.composition import Services, open_services
from conveyor.domain.clock import OffsetClock
from conveyor.settings import BatchSettings, Settings
from conveyor.storage.database import open_database
from conveyor.storage.migrate import upgrade
from tests.conftest import remove_batches

SMALL_BATCHES: dict[str, Any] = {
    "chunk_size": 20,
    "group_size": 7,
    "results_per_file": 25,
    "page_size": 10,
    "ingest_page_size": 4,
    "worker_threads": 2,
    # Groups of exactly `group_size` and a whole chunk per work step, however slow this
    # machine is: tests count steps and groups (fairness has its own tests and bench).
    "work_slice_seconds": 3600,
    "group_hold_seconds": 3600,
    # The scheduler's loop stays out of the way: tests drive recovery explicitly, and a
    # sweep firing at a random moment would make the timing of a test part of its outcome.
    "sweep_interval_seconds": 3600.0,
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "batch_settings(**fields): override BatchSettings fields")
    config.addinivalue_line("markers", "settings(**fields): override top-level Settings fields")


def _marker_kwargs(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    # Closest last, so a test's marker wins over its module's.
    for marker in reversed(list(request.node.iter_markers(name))):
        merged.update(marker.kwargs)
    return merged


@pytest.fixture
def batch_settings(request: pytest.FixtureRequest) -> BatchSettings:
    return BatchSettings(**{**SMALL_BATCHES, **_marker_kwargs(request, "batch_settings")})


@pytest.fixture
def settings(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_url: str | None,
    batch_settings: BatchSettings,
) -> Settings:
    base = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret="test-secret",
        batches=batch_settings,
    )
    return base.model_copy(update=_marker_kwargs(request, "settings"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database to copy: migrating from scratch for every test was the
    largest part of this suite's setup time."""
    path = tmp_path_factory.mktemp("sqlite-template") / "conveyor.db"
    database = open_database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def migrated_urls() -> set[str]:
    return set()


@pytest.fixture
def services(
    request: pytest.FixtureRequest,
    settings: Settings,
    clock: OffsetClock,
    migrated_urls: set[str],
) -> Iterator[Services]:
    """As the shared fixture, with each database migrated once per session, not per test."""
    url = settings.database_url
    if url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        template = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, settings.data_dir / "conveyor.db")
        migrate = False
    else:
        migrate = url not in migrated_urls
        migrated_urls.add(url)
    built = open_services(settings, migrate=migrate, clock=clock)
    yield built
    built.close()


@pytest.fixture(autouse=True)
def no_batches_in_flight(services: Services) -> None:
    """Autouse, so it runs before the `runtime` fixture starts (see `remove_batches`)."""
    remove_batches(services)
