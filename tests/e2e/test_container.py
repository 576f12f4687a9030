"""`deploy/Dockerfile`'s entrypoint, run as the container runs it, where no Docker engine is.

The image is rebuilt the way the Dockerfile builds it (`pip install .` into a fresh
environment of the system's Python), a fresh volume is made the way Docker makes a named
volume (owned by the image folder's owner), and the entrypoint runs with the Dockerfile's
environment, working directory and non-root user. Container paths are mapped to temporary
folders; the address is 127.0.0.1 instead of the image's 0.0.0.0 (nothing here may listen
beyond loopback).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_service
from tests.e2e.server import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SYSTEM_PYTHON = Path("/usr/bin/python3")


@dataclass
class Image:
    """What the Dockerfile says about the container it makes."""

    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str = "root"
    uid: int = 0
    volumes: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)


def read_dockerfile(path: Path) -> Image:
    image = Image()
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "ENV":
            image.env.update(dict(part.split("=", 1) for part in shlex.split(rest)))
        elif word == "WORKDIR":
            image.workdir = rest
        elif word == "USER":
            image.user = rest
        elif word == "VOLUME":
            image.volumes.append(rest)
        elif word == "ENTRYPOINT":
            image.entrypoint = json.loads(rest)
        elif word == "CMD":
            image.cmd = json.loads(rest)
        elif word == "HEALTHCHECK":
            image.healthcheck = json.loads(rest[rest.index("CMD") + 3 :].strip())
        elif word == "RUN" and "useradd" in rest:
            found = re.search(r"--uid (\d+)", rest)
            image.uid = int(found.group(1)) if found else 0
    return image


@dataclass
class Container:
    image: Image
    root: Path  # the container's / as seen from here
    python_bin: Path

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def environment(self, port: int) -> dict[str, str]:
        env = {"PATH": f"{self.python_bin}:/usr/bin:/bin", "HOME": str(self.path("/home"))}
        for name, value in self.image.env.items():
            env[name] = str(self.path(value)) if value.startswith("/") else value
        env.update({"CONVEYOR_HOST": "127.0.0.1", "CONVEYOR_PORT": str(port)})
        return env

    def run_as_user(self, argv: list[str], port: int, **options: object) -> subprocess.Popen[str]:
        uid = self.image.uid

        def drop_privileges() -> None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            argv,
            cwd=self.path(self.image.workdir),
            env=self.environment(port),
            preexec_fn=drop_privileges,
            text=True,
            **options,
        )


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    if os.geteuid() != 0:
        pytest.skip("dropping to the image's user needs root")
    if not SYSTEM_PYTHON.exists():
        require_service("the system Python (Debian's python3)", "/usr/bin/python3 is missing")
    image = read_dockerfile(DOCKERFILE)
    assert image.user != "root" and image.uid > 0, "the image must not run as root"
    root = Path(tempfile.mkdtemp(prefix="conveyor-container-"))
    root.chmod(0o755)
    try:
        venv = root / "usr" / "local"
        subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], check=True)
        # The Dockerfile's `pip install .`, from a copy of what it copies.
        source = root / "app"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, source / name)
        shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", "--no-cache-dir", str(source)],
            check=True,
            timeout=900,
        )
        for folder in ("/home", image.workdir, *image.volumes):
            made = root / folder.lstrip("/")
            made.mkdir(parents=True, exist_ok=True)
        # A fresh named volume takes the owner of the image folder it is mounted on, which
        # the Dockerfile gives to its user.
        for volume in [image.workdir, *image.volumes]:
            os.chown(root / volume.lstrip("/"), image.uid, image.uid)
        os.chown(root / "home", image.uid, image.uid)
        yield Container(image, root, venv / "bin")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_entrypoint_serves_as_a_non_root_user_on_a_fresh_volume(
    container: Container,
) -> None:
    image = container.image
    assert image.entrypoint == ["conveyor"] and image.cmd[0] == "serve"
    port = free_port()
    process = container.run_as_user(
        [*image.entrypoint, *image.cmd],
        port,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        key = process.stdout.readline().strip()
        assert re.fullmatch(r"[0-9a-f]{32}-us1", key), key
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the container never became ready"
            time.sleep(0.2)
        assert httpx.get(f"{base}/3.0/ping", auth=("x", key)).status_code == 200
        # The database was created in the volume, by the image's user.
        data = container.path(image.env["CONVEYOR_DATA_DIR"])
        assert (data / "conveyor.db").stat().st_uid == image.uid
        # The image's own health check passes against it.
        check = container.run_as_user(image.healthcheck, port)
        assert check.wait(timeout=30) == 0
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_other_commands_are_given_as_arguments(container: Container) -> None:
    image = container.image
    done = container.run_as_user(
        [*image.entrypoint, "keys", "list"],
        free_port(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err


def test_the_health_check_fails_when_nothing_serves(container: Container) -> None:
    check = container.run_as_user(container.image.healthcheck, free_port(), stderr=subprocess.PIPE)
    check.communicate(timeout=30)
    assert check.returncode != 0
