"""Requests per second over HTTP, measured with wrk against a real `conveyor serve`.

- `GET /3.0/ping` and `POST /3.0/lists/{id}/members` (a new address in every request), each
  with `--connections` concurrent connections (10: the real service's per-key limit).
- Beside each, the HTTP floor: the same request against `bench.bare_app` (uvicorn + Starlette
  answering a canned body) served the same way, so the gap is Conveyor's own work.

wrk runs on the same machine and takes CPU from the server; one wrk thread is enough for
these rates and leaves the most to the server. Each measured run follows a short warm-up.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from tests.conftest import LIST_BODY
from tests.e2e.server import ServerProcess, child_env, free_port

from bench.report import Figure, print_table, write_json

HTTP_TARGET = 1_500.0
LUA = Path(__file__).resolve().parent / "wrk" / "marketing.lua"


class WrkMissing(RuntimeError):
    pass


@dataclass
class WrkRun:
    requests: int
    seconds: float
    errors: dict[str, int]
    latency_us: dict[str, float]
    server_cpu_seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def ok_per_second(self) -> float:
        return (self.requests - self.errors["status"]) / self.seconds

    def latency_ms(self) -> dict[str, float]:
        return {name: value / 1000 for name, value in self.latency_us.items()}


@dataclass(frozen=True)
class Load:
    connections: int
    threads: int
    seconds: float
    warmup_seconds: float


def wrk(url: str, mode: str, auth: str, load: Load, seconds: float, run: str) -> WrkRun:
    exe = shutil.which("wrk")
    if exe is None:
        raise WrkMissing("wrk is not installed (apt-get install -y wrk)")
    command = [
        exe,
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout", "10s",
        "-s", str(LUA),
        url,
    ]  # fmt: skip
    env = {**os.environ, "BENCH_AUTH": auth, "BENCH_MODE": mode, "BENCH_RUN": run}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    data: dict[str, Any] = orjson.loads(line.removeprefix("WRK_JSON "))
    return WrkRun(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        errors={name: int(n) for name, n in data["errors"].items()},
        latency_us={name: float(v) for name, v in data["latency_us"].items()},
    )


def measure_one(url: str, mode: str, auth: str, load: Load, tag: str, pid: int) -> WrkRun:
    """A warm-up run, then the measured one; also the server's CPU time during it."""
    wrk(url, mode, auth, load, load.warmup_seconds, f"{tag}w")
    server = psutil.Process(pid)
    before = server.cpu_times()
    run = wrk(url, mode, auth, load, load.seconds, tag)
    after = server.cpu_times()
    run.server_cpu_seconds = (after.user - before.user) + (after.system - before.system)
    return run


def figure(name: str, run: WrkRun, target: float | None, load: Load) -> Figure:
    cpu_ms = run.server_cpu_seconds / max(run.requests, 1) * 1e3
    return Figure(
        name,
        run.ok_per_second,
        "req/s",
        target,
        latency_ms=run.latency_ms(),
        note=f"server CPU {cpu_ms:.2f} ms/req, {run.server_cpu_seconds / run.seconds:.0%}",
        details={
            "requests": run.requests,
            "seconds": run.seconds,
            "errors": run.errors,
            # CPU the server process used per request (user + system, all its threads): less
            # sensitive than req/s to what else runs on the machine.
            "server_cpu_ms_per_request": cpu_ms,
            "server_cpu_percent": run.server_cpu_seconds / run.seconds * 100,
            "connections": load.connections,
            "wrk_threads": load.threads,
        },
    )


@contextmanager
def bare_server(workdir: Path) -> Iterator[tuple[str, int]]:
    """`bench.bare_app` on uvicorn; yields its base URL and pid."""
    port = free_port()
    log = (workdir / "bare.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.bare_app:app",
         "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        stdout=log, stderr=subprocess.STDOUT, env=child_env(),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/3.0/ping", timeout=1.0)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("bench.bare_app did not start") from None
                time.sleep(0.02)  # readiness poll interval
        yield base, process.pid
    finally:
        process.kill()
        process.wait()
        log.close()


def basic_auth(key: str) -> str:
    return "Basic " + base64.b64encode(f"bench:{key}".encode()).decode()


def measure(load: Load) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-http-") as folder:
        workdir = Path(folder)
        with ServerProcess(workdir / "conveyor") as server:
            auth = basic_auth(server.key)
            created = httpx.post(
                f"{server.api_url}/lists", json=LIST_BODY, headers={"Authorization": auth}
            )
            created.raise_for_status()
            list_id = created.json()["id"]
            members_url = f"{server.api_url}/lists/{list_id}/members"
            ping = measure_one(f"{server.api_url}/ping", "get", auth, load, "ping", server.pid)
            post = measure_one(members_url, "post-member", auth, load, "post", server.pid)
            stored = httpx.get(
                f"{server.api_url}/lists/{list_id}",
                params={"fields": "stats.member_count"},
                headers={"Authorization": auth},
            ).json()["stats"]["member_count"]
        with bare_server(workdir) as (base, pid):
            bare_ping = measure_one(f"{base}/3.0/ping", "get", auth, load, "bare", pid)
            bare_post = measure_one(
                f"{base}/3.0/lists/x/members", "post-member", auth, load, "bare", pid
            )
    posted = figure("POST /3.0/lists/{id}/members over HTTP", post, HTTP_TARGET, load)
    posted.details["members_stored_after_warmup_and_run"] = stored
    return [
        figure("GET /3.0/ping over HTTP", ping, HTTP_TARGET, load),
        figure("  floor: bare uvicorn + Starlette", bare_ping, None, load),
        posted,
        figure("  floor: bare uvicorn + Starlette", bare_post, None, load),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=10, help="concurrent connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="length of the warm-up run")


def load_from(args: argparse.Namespace) -> Load:
    return Load(args.connections, args.threads, args.seconds, args.warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    try:
        figures = measure(load_from(args))
    except WrkMissing as exc:
        raise SystemExit(str(exc)) from None
    print_table(figures)
    print("\nwritten:", write_json("http", figures, vars(args)))


if __name__ == "__main__":
    main()
