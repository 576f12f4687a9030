"""The first minutes of a newcomer, as the README tells them: a clean clone, `make serve`,
and the README's own commands, run as written with only their placeholders filled in.

The clone is of the committed tree (what CI checks out); `make serve` builds its `.venv`
from nothing, so this is also the proof that serving needs nothing outside the clone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def readme_block(heading: str) -> str:
    """The first ```sh block under a `## heading` of the README."""
    text = README.read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, heading
    return found.group(1)


def as_script(block: str, key: str, port: int, last: Path) -> str:
    """The block with its placeholders filled the way a reader fills them: the key printed
    at start-up, this server's port, and `NAME=...  # the "id" of the answer` from the
    answer just printed. A batch is read once it has finished, as a reader would wait."""
    lines = [
        "set -euo pipefail",
        # Every answer is kept, as the reader sees it on the screen.
        f'curl() {{ command curl "$@" | tee {last}; echo; }}',
    ]
    for line in block.splitlines():
        name = re.match(r"^(\w+)=\.\.\.", line)
        if line.startswith("KEY=..."):
            lines.append(f"KEY={key}")
        elif line.startswith("API=http://127.0.0.1:8000/3.0"):
            lines.append(f"API=http://127.0.0.1:{port}/3.0")
        elif name:
            lines.append(
                f"{name.group(1)}=$(python3 -c 'import json,sys; print(json.load(sys.stdin)"
                f'["id"])\' < {last})'
            )
        elif "response_body_url" in line and line.startswith("curl -s -o"):
            lines.append(
                'until curl -s -u "anystring:$KEY" $API/batches/$BATCH | grep -q \'"finished"\';'
                " do sleep 0.2; done"
            )
            lines.append(line)
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    target = tmp_path_factory.mktemp("newcomer") / "conveyor"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    assert not (target / ".venv").exists()
    return target


@pytest.fixture(scope="module")
def served(clone: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_PORT"] = str(port)
    process = subprocess.Popen(
        ["make", "serve"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # make and the server it starts stop together
    )
    try:
        assert process.stdout is not None
        key = ""
        deadline = time.monotonic() + 600
        while not re.fullmatch(r"[0-9a-f]{32}-us1", key):
            assert time.monotonic() < deadline, "make serve printed no key"
            line = process.stdout.readline()
            assert line or process.poll() is None, process.stderr.read() if process.stderr else ""
            key = line.strip()
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "make serve never answered"
                time.sleep(0.2)
        yield key, port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=60)


def test_make_serve_installs_only_what_serving_needs(clone: Path, served: object) -> None:
    venv = clone / ".venv"
    assert (venv / "bin" / "conveyor").exists()
    # The test toolchain is `make test`'s business.
    for tool in ("pytest", "mypy", "ruff"):
        assert not (venv / "bin" / tool).exists(), tool


def test_the_readme_commands_work_as_written(
    clone: Path, served: tuple[str, int], tmp_path: Path
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    key, port = served
    last = tmp_path / "last-answer.json"
    script = as_script(readme_block("Use it like the real API"), key, port, last)
    script += as_script(readme_block("Run a batch"), key, port, last).split("\n", 2)[2]
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    assert "Everything's Chimpy!" in out
    assert '"email_address":"ann@example.org"' in out
    # The batch's archive was downloaded and unpacked: one result each, the bad one a 400.
    assert '"operation_id":"row-1"' in out.replace(" ", "")
    assert '"status_code":400' in out.replace(" ", "")
    assert list(tmp_path.glob("*.json")), "the archive held no result file"
