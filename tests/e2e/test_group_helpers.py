"""The server's helper processes (runtime/group_helpers.py) run its batches and go with it."""

from __future__ import annotations

import signal
import time

import httpx
import psutil
import pytest

from tests.e2e.conftest import StartServer
from tests.e2e.server import ServerProcess
from tests.e2e.test_server_process import create_list

pytestmark = pytest.mark.e2e


def _helpers(server: ServerProcess) -> list[psutil.Process]:
    children = psutil.Process(server.pid).children(recursive=True)
    return [child for child in children if "multiprocessing.spawn" in " ".join(child.cmdline())]


def _status(process: psutil.Process) -> str:
    try:
        return str(process.status())
    except psutil.NoSuchProcess:
        return psutil.STATUS_DEAD


def _run_batch(server: ServerProcess, count: int, prefix: str) -> dict[str, object]:
    auth = ("x", server.key)
    with httpx.Client(base_url=server.api_url, auth=auth, timeout=60) as client:
        create_list(server)
        list_id = client.get("/lists").json()["lists"][0]["id"]
        operations = [
            {
                "method": "POST",
                "path": f"/lists/{list_id}/members",
                "body": f'{{"email_address": "{prefix}{i}@example.org", "status": "subscribed"}}',
            }
            for i in range(count)
        ]
        batch = client.post("/batches", json={"operations": operations}).json()
        deadline = time.monotonic() + 120
        while batch["status"] != "finished":
            assert time.monotonic() < deadline, batch
            time.sleep(0.05)
            batch = client.get(f"/batches/{batch['id']}").json()
        return dict(batch)


def test_helpers_start_with_the_server_and_leave_with_it_killed(
    start_server: StartServer,
) -> None:
    env = {
        "CONVEYOR_BATCH_PREPARE_PROCESSES": "1",
        "CONVEYOR_BATCH_PREPARE_MIN_OPERATIONS": "50",
        "CONVEYOR_BATCH_GROUP_SIZE": "100",
        # Several chunks: the helper plans them too.
        "CONVEYOR_BATCH_CHUNK_SIZE": "300",
    }
    server = start_server(env=env)
    deadline = time.monotonic() + 60
    while "1 group helper process(es) ready" not in server.stderr_text():
        assert time.monotonic() < deadline, "the helper never got ready"
        time.sleep(0.05)
    helpers = _helpers(server)
    assert len(helpers) == 1
    # The helper plans the batch and prepares its groups (its CPU time shows it).
    cpu_before = sum(helpers[0].cpu_times()[:2])
    batch = _run_batch(server, 1_000, "helped")
    assert (batch["finished_operations"], batch["errored_operations"]) == (1_000, 0)
    assert sum(helpers[0].cpu_times()[:2]) - cpu_before > 0.01

    server.kill()
    _gone, alive = psutil.wait_procs(helpers, timeout=10)
    assert alive == [], "a helper outlived its server"


def test_sigterm_stops_the_runtime_and_its_helpers_before_the_server_exits(
    start_server: StartServer,
) -> None:
    # What a supervisor (systemd, Docker, Kubernetes) sends. uvicorn re-raises the signal
    # once it has shut down; the runtime must still be stopped before the process dies.
    server = start_server(env={"CONVEYOR_BATCH_PREPARE_PROCESSES": "1"})
    deadline = time.monotonic() + 60
    while "1 group helper process(es) ready" not in server.stderr_text():
        assert time.monotonic() < deadline, "the helper never got ready"
        time.sleep(0.05)
    batch = _run_batch(server, 200, "before-term")
    assert batch["finished_operations"] == 200
    children = psutil.Process(server.pid).children(recursive=True)
    assert children, "serve started no helper"

    assert server.stop() == -signal.SIGTERM  # it still dies of the signal, as expected
    # Stopped with the server, not left to notice their parent is gone (a process that has
    # exited but that nobody has reaped yet, now that its parent is dead, counts as gone).
    _gone, alive = psutil.wait_procs(children, timeout=1)
    assert [p for p in alive if _status(p) != psutil.STATUS_ZOMBIE] == [], alive
    log = server.stderr_text()
    assert "Worker has been shut down" in log  # the runtime's workers were stopped
    assert "leaked" not in log, log  # multiprocessing's resources were given back
