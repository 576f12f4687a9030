"""Fixtures that start `conveyor serve` as a real process (see `tests/e2e/server.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.e2e.server import ServerProcess

StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start servers on demand, each in its own folder; all are killed at teardown.

    `start_server(env={"CONVEYOR_MAX_CONCURRENT_REQUESTS": "2"})` → a started
    `ServerProcess`; `args` are extra `conveyor serve` flags.
    """
    started: list[ServerProcess] = []

    def start(
        env: Mapping[str, str] | None = None, args: Sequence[str] = (), port: int | None = None
    ) -> ServerProcess:
        server = ServerProcess(tmp_path / f"server{len(started)}", env=env, args=args, port=port)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.close()


@pytest.fixture
def server(start_server: StartServer) -> ServerProcess:
    """A fresh `conveyor serve` on a free port with an empty data dir."""
    return start_server()
