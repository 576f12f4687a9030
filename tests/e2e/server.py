"""`conveyor serve` as a real process, for end-to-end and crash tests.

    with ServerProcess(tmp_path) as server:
        httpx.get(f"{server.base_url}/3.0/ping", auth=("any", server.key))
        server.kill()       # SIGKILL: a crash
        server.restart()    # same data dir, same port, same key

The process gets its own data dir and a free port on 127.0.0.1; its stdout and stderr go to
files beside the data dir (one pair per start), so a full pipe can never stall it and a
failing test can show what the server said. It is killed when the object is closed (the
fixtures do that) and, on Linux, when the thread that started it dies, so a test run that
is itself killed leaves no server behind: start servers from the main thread.
`CONVEYOR_*` variables of the calling environment are not inherited (a developer's
CONVEYOR_DATABASE_URL must not redirect a test server); pass what a test needs as `env`.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

KEY_SHAPE = re.compile(r"[0-9a-f]{32}-[a-z]{2,8}[0-9]{0,4}")


class ServerError(RuntimeError):
    """The server did not start, or did not stop, as asked."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a `conveyor` child: ours without CONVEYOR_*, plus `extra`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CONVEYOR_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGKILL when the parent dies, so that a test
    run that is itself killed leaves no server behind (elsewhere: nothing is asked)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))


def conveyor_command(*args: str) -> list[str]:
    """`conveyor ARGS` with the interpreter running the tests (the project's venv)."""
    return [sys.executable, "-m", "conveyor.cli", *args]


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run one `conveyor` command to completion; stdout and stderr captured as text."""
    return subprocess.run(
        conveyor_command(*args),
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ServerProcess:
    """One `conveyor serve` process; restartable on the same data dir and port."""

    def __init__(
        self,
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.env = dict(env or {})
        self.args = list(args)
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.starts = 0
        self._key: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._clients: list[httpx.Client] = []

    # -- addresses and credentials ------------------------------------------------------

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, without `/3.0`."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/3.0"

    @property
    def key(self) -> str:
        """The API key printed by the first start (kept across restarts)."""
        if self._key is None:
            raise ServerError("the server printed no API key (was the data dir already in use?)")
        return self._key

    @property
    def pid(self) -> int:
        return self._running().pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"server-{self.starts}.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"server-{self.starts}.stderr"

    def stderr_text(self) -> str:
        """What the current (or last) start logged."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> ServerProcess:
        if self.running:
            raise ServerError("already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        command = conveyor_command(
            "serve",
            "--host", self.host,
            "--port", str(self.port),
            "--data-dir", str(self.data_dir),
            *self.args,
        )  # fmt: skip
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=child_env(self.env),
                start_new_session=True,  # a Ctrl-C in the terminal is for pytest, not for it
                preexec_fn=_die_with_parent,
            )
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        self._read_key()
        return self

    def wait_ready(self) -> None:
        """Poll `GET /3.0/ping` until it answers (any status: 401 without a key is fine)."""
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                process = self._running()
                if process.poll() is not None:
                    raise ServerError(
                        f"conveyor serve exited with {process.returncode} during start:\n"
                        + self.stderr_text()[-4000:]
                    )
                try:
                    client.get(f"{self.api_url}/ping")
                    return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"conveyor serve did not answer within {self.startup_timeout:g} s:\n"
                        + self.stderr_text()[-4000:]
                    )
                time.sleep(0.02)  # the poll interval of a readiness poll

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for a clean exit; SIGKILL and raise if it does not come."""
        return self._signal(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """SIGKILL: the process dies at once, as in a crash or an OOM kill."""
        return self._signal(signal.SIGKILL, 15.0)

    def restart(self) -> ServerProcess:
        """Stop (gracefully) if running, then start again on the same data dir and port."""
        if self.running:
            self.stop()
        return self.start()

    def owned(self, client: httpx.Client) -> httpx.Client:
        """`client`, closed with the server: a test's clients outlive kills and restarts,
        and a client left open surfaces later as another test's ResourceWarning."""
        self._clients.append(client)
        return client

    def close(self) -> None:
        """Make sure no process is left behind, whatever state it is in."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self._process is not None and self._process.poll() is None:
            self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise ServerError("not started")
        return self._process

    def _signal(self, signum: signal.Signals, timeout: float) -> int:
        process = self._running()
        if process.poll() is None:
            process.send_signal(signum)
            try:
                return process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise ServerError(f"no exit {timeout:g} s after {signum.name}; killed") from None
        return int(process.returncode)

    def _read_key(self) -> None:
        # The key is printed before the server listens, so once ping answers it is there.
        lines = self.stdout_path.read_text().splitlines()
        if lines and KEY_SHAPE.fullmatch(lines[0].strip()):
            if self._key is not None:
                raise ServerError("a restart printed a new key: the data dir was not reused")
            self._key = lines[0].strip()
