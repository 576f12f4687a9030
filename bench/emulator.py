"""The emulator (issue 12): `conveyor emulate` start-up to its first answered request, and
the pytest plugin's per-test reset, in milliseconds, each beside its comparison in one run.

a. start-up: a real `conveyor emulate --port 0` process, from spawn to the first 200 of
   `GET /3.0/ping` with a key it has never seen (the URL is read from its stdout), beside
   `conveyor serve --port 0` on a fresh data dir to its first 200 (with the key it prints),
   taking turns round by round.
b. reset: the plugin's `conveyor.reset()` (POST /_conveyor/reset over HTTP, as the fixture
   does before each test) against the in-process emulator the fixture starts: empty, and
   after what a typical test leaves (a list, 20 members, a batch of 20 upserts that ran, a
   webhook and its delivery, journal entries, a fault), beside starting a fresh emulator
   (what a suite without reset would do per test).

python -m bench.emulator [--rounds 11]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil

from bench.report import Figure, print_table, write_json
from conveyor.testing.emulator import EmulatorServer

KEY = "0123456789abcdef0123456789abcdef-us1"
LIST_BODY = {
    "name": "Newsletter",
    "permission_reminder": "You signed up on our site.",
    "email_type_option": False,
    "contact": {"company": "Acme", "address1": "1 Main St", "city": "Springfield",
                "state": "IL", "zip": "62701", "country": "US"},
    "campaign_defaults": {"from_name": "Acme", "from_email": "news@acme.org",
                          "subject": "News", "language": "en"},
}  # fmt: skip


CACHE = Path(tempfile.mkdtemp(prefix="bench-emulator-cache-"))


def _env() -> dict[str, str]:
    # As installed: pip compiles bytecode at install time, so a start loads it. An
    # environment that forbids writing it (PYTHONDONTWRITEBYTECODE, as some CI images set)
    # recompiles Conveyor's ~110 modules on every start (~0.2 s here): `main` compiles them
    # once first.
    kept = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CONVEYOR_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    # Emulators copy a migrated template from the cache; the first start makes it.
    return {**kept, "XDG_CACHE_HOME": str(CACHE)}


def _compile_bytecode() -> None:
    import compileall

    import conveyor

    compileall.compile_dir(Path(conveyor.__file__).parent, quiet=1)


def _first_answer(url: str, key: str, deadline: float) -> None:
    with httpx.Client(auth=("x", key), timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                if client.get(f"{url}/ping").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.002)
    raise RuntimeError(f"no answer from {url}")


def _start_and_answer(command: list[str], data_dir: Path | None) -> tuple[float, float]:
    """Milliseconds from spawn to the first 200 of /3.0/ping, and the CPU milliseconds the
    server process spent until then (steadier than wall time on a shared machine)."""
    conveyor = str(Path(sys.executable).parent / "conveyor")
    args = [conveyor, *command, "--port", "0"]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    started = time.monotonic()
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        if command[0] == "emulate":
            url, key = process.stdout.readline().strip(), KEY
        else:  # serve prints the key on stdout and the URL on stderr
            key = process.stdout.readline().strip()
            url = ""
            while "/3.0" not in url:
                line = process.stderr.readline()
                if not line:
                    raise RuntimeError("serve ended before announcing its URL")
                url = line.strip().rsplit(" ", 1)[-1] if "/3.0" in line else ""
        _first_answer(url, key, started + 60)
        wall = (time.monotonic() - started) * 1000
        cpu = psutil.Process(process.pid).cpu_times()
        return wall, (cpu.user + cpu.system) * 1000
    finally:
        process.terminate()
        process.wait(timeout=30)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _typical_test(server: EmulatorServer, receiver_url: str) -> None:
    """What one test of an integration suite leaves behind."""
    handle = server.handle
    with httpx.Client(base_url=handle.base_url, auth=("x", handle.api_key), timeout=30) as api:
        list_id = api.post("/lists", json=LIST_BODY).json()["id"]
        api.post("/batch-webhooks", json={"url": receiver_url})
        for n in range(20):
            api.post(
                f"/lists/{list_id}/members",
                json={"email_address": f"m{n}@example.org", "status": "subscribed"},
            )
        operations = [
            {
                "method": "PUT",
                "path": f"/lists/{list_id}/members/"
                + hashlib.md5(f"b{n}@example.org".encode()).hexdigest(),
                "body": json.dumps(
                    {"email_address": f"b{n}@example.org", "status_if_new": "subscribed"}
                ),
            }
            for n in range(20)
        ]
        api.post("/batches", json={"operations": operations})
    handle.fault("GET", "/3.0/ping", 500, times=1)
    handle.settle()


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = statistics.quantiles(ordered, n=100)[98] if len(ordered) > 1 else ordered[0]
    return {
        "p50": round(statistics.median(ordered), 2),
        "p99": round(p99, 2),
        "min": round(ordered[0], 2),
        "max": round(ordered[-1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--resets", type=int, default=50)
    options = parser.parse_args()
    _compile_bytecode()
    os.environ["XDG_CACHE_HOME"] = str(CACHE)  # for the in-process emulators too
    first_ms, _ = _start_and_answer(["emulate"], None)  # makes the template: not counted

    emulate_ms: list[float] = []
    serve_ms: list[float] = []
    emulate_cpu_ms: list[float] = []
    serve_cpu_ms: list[float] = []
    for _ in range(options.rounds):
        wall, cpu = _start_and_answer(["emulate"], None)
        emulate_ms.append(wall)
        emulate_cpu_ms.append(cpu)
        with tempfile.TemporaryDirectory() as scratch:
            wall, cpu = _start_and_answer(["serve"], Path(scratch))
        serve_ms.append(wall)
        serve_cpu_ms.append(cpu)

    class Accept(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Accept)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    receiver_url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"

    empty_ms: list[float] = []
    after_test_ms: list[float] = []
    fresh_ms: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        server = EmulatorServer.start(Path(scratch) / "session", api_key=KEY)
        try:
            for _ in range(options.resets):
                empty_ms.append(_timed(server.handle.reset))
                _typical_test(server, receiver_url)
                after_test_ms.append(_timed(server.handle.reset))
        finally:
            server.stop()
        for n in range(options.rounds):

            def fresh(n: int = n) -> None:
                EmulatorServer.start(Path(scratch) / f"fresh{n}", api_key=KEY).stop()

            fresh_ms.append(_timed(fresh))
    receiver.shutdown()
    receiver.server_close()

    figures = [
        Figure("a. conveyor emulate: spawn to first answer", statistics.median(emulate_ms), "ms",
               latency_ms=_summary(emulate_ms)),
        Figure("a. conveyor serve (fresh data dir): spawn to first answer",
               statistics.median(serve_ms), "ms", latency_ms=_summary(serve_ms)),
        Figure("a. conveyor emulate: CPU time of the server until then",
               statistics.median(emulate_cpu_ms), "ms", latency_ms=_summary(emulate_cpu_ms)),
        Figure("a. conveyor serve: CPU time of the server until then",
               statistics.median(serve_cpu_ms), "ms", latency_ms=_summary(serve_cpu_ms)),
        Figure("b. plugin reset, empty", statistics.median(empty_ms), "ms",
               latency_ms=_summary(empty_ms)),
        Figure("b. plugin reset after a typical test", statistics.median(after_test_ms), "ms",
               latency_ms=_summary(after_test_ms)),
        Figure("b. a fresh in-process emulator instead (start + stop)",
               statistics.median(fresh_ms), "ms", latency_ms=_summary(fresh_ms)),
    ]  # fmt: skip
    figures.append(
        Figure("a. conveyor emulate, very first start (makes the template)", first_ms, "ms")
    )
    print_table(figures)
    startup = statistics.median(emulate_ms) / statistics.median(serve_ms)
    reset = statistics.median(fresh_ms) / statistics.median(after_test_ms)
    print(
        f"emulate/serve start-up: {startup:.2f}x; fresh emulator / reset after a test: {reset:.1f}x"
    )
    write_json("emulator", figures, vars(options))
    shutil.rmtree(CACHE, ignore_errors=True)


if __name__ == "__main__":
    main()
