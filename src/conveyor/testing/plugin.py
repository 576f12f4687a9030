"""The pytest plugin (a `pytest11` entry point): the `conveyor` fixture.

pytest imports this module in every session where Conveyor is installed, this project's
own included, so it imports nothing but pytest: the server and its libraries load only
when a test asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conveyor.testing.emulator import Conveyor, EmulatorServer


@pytest.fixture(scope="session")
def conveyor_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """One emulate-mode Conveyor per test session, in this process, on a free port."""
    from conveyor.testing.emulator import EmulatorServer

    server = EmulatorServer.start(tmp_path_factory.mktemp("conveyor"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def conveyor(conveyor_server: EmulatorServer) -> Conveyor:
    """The session's emulator, reset before this test: no lists, members, batches, webhooks,
    journal, faults or pace left from another test."""
    handle = conveyor_server.handle
    handle.reset()
    return handle
