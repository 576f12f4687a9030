"""Start-up as an operator meets it: the real port, a busy port, a way to get a key."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess, child_env, conveyor_command, run_cli

pytestmark = pytest.mark.e2e


def _start(*args: str, data_dir: Path) -> subprocess.Popen[str]:
    command = conveyor_command("serve", "--data-dir", str(data_dir), *args)
    return subprocess.Popen(
        command, env=child_env(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _announced_url(process: subprocess.Popen[str], timeout: float = 30) -> str:
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        found = re.search(r"serving the Marketing API at (\S+)", line)
        if found:
            return found.group(1)
    raise AssertionError("no start-up line")


def test_port_zero_announces_the_real_port(tmp_path: Path) -> None:
    process = _start("--port", "0", data_dir=tmp_path / "data")
    try:
        url = _announced_url(process)
        port = int(url.rsplit(":", 1)[1].removesuffix("/3.0"))
        assert port > 0
        assert process.stdout is not None
        key = process.stdout.readline().strip()
        assert httpx.get(f"{url}/ping", auth=("x", key)).status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_a_busy_port_is_one_line_and_nothing_starts(server: ServerProcess, tmp_path: Path) -> None:
    taken = run_cli("serve", "--data-dir", str(tmp_path / "other"), "--port", str(server.port))
    assert taken.returncode == 1
    assert f"cannot listen on 127.0.0.1:{server.port}" in taken.stderr
    assert "Address already in use" in taken.stderr
    assert "Traceback" not in taken.stderr and "serving" not in taken.stderr
    assert not (tmp_path / "other").exists()  # refused before anything was created


def test_a_restart_says_how_to_get_a_key(server: ServerProcess) -> None:
    server.stop()
    server.restart()
    said = server.stderr_path.read_text()
    assert "API key(s) active; another: conveyor keys create --data-dir" in said


def test_an_unreachable_database_is_one_line_with_exit_status_2(tmp_path: Path) -> None:
    done = run_cli("keys", "list", "--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert done.returncode == 2
    assert done.stderr.startswith("Error: CONVEYOR_DATABASE_URL: cannot reach the database")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_health_endpoints_of_a_running_server(server: ServerProcess) -> None:
    assert httpx.get(f"{server.base_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.base_url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"blobs": "ok", "database": "ok", "runtime": "ok"}


def test_no_dramatiq_warning_at_start(server: ServerProcess) -> None:
    said = server.stderr_path.read_text()
    assert "middleware of the same type twice" not in said
