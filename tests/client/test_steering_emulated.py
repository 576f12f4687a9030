"""The batch extensions where time matters, on the in-process emulator (`conveyor` fixture):
paced batches show a rate and an ETA, a batch deleted while watched ends the watch, a batch
purged after its seven days is gone for every extension."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable, Iterator
from contextlib import closing

import pytest
from rich.console import Console

from conveyor.client import Client, ConveyorApiError, ProgressUpdate
from conveyor.client.progress import WatchProgress
from conveyor.testing import Conveyor
from tests.client.support import invoke
from tests.e2e.server import child_env, conveyor_command

pytestmark = pytest.mark.e2e

EIGHT_DAYS = 8 * 24 * 3600


def _pings(total: int) -> list[dict[str, object]]:
    return [{"method": "GET", "path": "/ping", "operation_id": f"p{i}"} for i in range(total)]


@pytest.fixture
def client(conveyor: Conveyor) -> Iterator[Client]:
    with Client(conveyor.api_key, base_url=conveyor.root_url) as made:
        yield made


def _env(conveyor: Conveyor) -> dict[str, str]:
    return {"CONVEYOR_URL": conveyor.root_url, "MAILCHIMP_API_KEY": conveyor.api_key}


def test_watch_reports_the_rate_and_the_eta_of_a_paced_batch(
    conveyor: Conveyor, client: Client
) -> None:
    # Groups of 500 at 1,000 operations a second: a progress event every half second or so.
    conveyor.pace(operations_per_second=1_000)
    batch = client.submit(_pings(2_500))
    watched = invoke("batch", "watch", batch.id, env=_env(conveyor))
    assert watched.exit_code == 0, watched.output
    lines = watched.stderr.splitlines()
    running = [line for line in lines if ": started," in line and "ops/s" in line]
    assert running, watched.stderr
    assert any("ETA " in line for line in running), watched.stderr
    assert lines[-1] == f"batch {batch.id} finished: 2500 operations, 2500 succeeded, 0 errored"


def test_the_bar_on_a_terminal_shows_rate_and_eta(conveyor: Conveyor, client: Client) -> None:
    conveyor.pace(operations_per_second=1_000)
    batch = client.submit(_pings(1_500))
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160, color_system=None)
    updates: list[ProgressUpdate] = []
    # Leaving the bar draws it one last time, as it stands: the state of the last update.
    with WatchProgress(console) as progress, closing(client.watch(batch.id)) as events:
        for update in events:
            progress.show(update)
            updates.append(update)
            if update.eta_seconds:
                break
    drawn = screen.getvalue()
    assert "ops/s" in drawn and "ETA " in drawn, drawn
    assert f"batch {batch.id} started" in drawn
    assert updates[-1].ops_per_second and updates[-1].ops_per_second > 0


def test_a_batch_deleted_while_watched_ends_the_watch(conveyor: Conveyor, client: Client) -> None:
    conveyor.pace(operations_per_second=500)
    batch = client.submit(_pings(5_000))
    updates = client.watch(batch.id)
    first = next(updates)
    assert first.event == "progress"
    client.delete(batch.id)
    rest = list(updates)
    assert rest[-1].event == "deleted" and rest[-1].last
    assert {u.event for u in rest[:-1]} <= {"progress"}


def test_the_watch_command_exits_1_when_the_batch_is_deleted(
    conveyor: Conveyor, client: Client
) -> None:
    conveyor.pace(operations_per_second=500)
    batch = client.submit(_pings(5_000))
    # A real process, so that the batch can be deleted while the command watches it.
    with subprocess.Popen(
        conveyor_command("batch", "watch", batch.id),
        env=child_env(_env(conveyor)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as watching:
        assert watching.stderr is not None
        first = watching.stderr.readline()
        assert first.startswith(f"batch {batch.id}: "), first
        client.delete(batch.id)
        out, err = watching.communicate(timeout=60)
    assert watching.returncode == 1, err
    assert out == ""
    assert err.splitlines()[-1] == f"Error: batch {batch.id} was deleted while it was watched"


def test_a_purged_batch_is_gone_for_every_extension(conveyor: Conveyor, client: Client) -> None:
    batch = client.submit(_pings(20))
    client.wait(batch.id, timeout=60)
    assert len(list(client.operations(batch.id))) == 20
    conveyor.advance(EIGHT_DAYS)

    calls: list[Callable[[], object]] = [
        lambda: list(client.operations(batch.id)),
        lambda: list(client.results_ndjson(batch.id)),
        lambda: list(client.watch(batch.id)),
        lambda: client.retry_failed(batch.id),
        lambda: client.cancel(batch.id),
    ]
    for call in calls:
        with pytest.raises(ConveyorApiError) as gone:
            call()
        assert gone.value.status == 404
    for command in (["ops", batch.id, "--failed"], ["watch", batch.id], ["retry", batch.id]):
        refused = invoke("batch", *command, env=_env(conveyor))
        assert refused.exit_code == 1
        assert refused.stderr.splitlines()[-1].startswith("Error: Resource Not Found")
