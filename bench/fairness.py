"""Fairness: a small batch submitted while a huge one runs, against a real `conveyor serve`.

Issue 9 item 6: a 10-operation batch submitted while a 200,000-operation batch runs must
finish within 1 s. Measured side by side in one run: the same 10-operation batch on the idle
server first (the floor), then several times while the big batch runs (round r once the big
batch is r/(rounds+1) done; with --early, as soon as it has shown progress since the last
round), from submit to the status read that first says `finished`, split into the submit's
answer, "to started" and "to finished"; beside it the SQLite WAL's frames in use.

python -m bench.fairness [--big 200000] [--small 10] [--rounds 5] [--early]
                         [--set CONVEYOR_X=value ...] [--server-log PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from tests.conftest import LIST_BODY
from tests.e2e.server import ServerProcess

from bench.report import Figure, print_table, write_json

TARGET_SECONDS = 1.0
POLL_SECONDS = 0.01


def upserts(list_id: str, count: int, prefix: str) -> Iterator[bytes]:
    """The body of a batch of member upserts, streamed (a 200k body is ~60 MB)."""
    yield b'{"operations":['
    for i in range(count):
        email = f"{prefix}{i}@example.org"
        operation = {
            "method": "PUT",
            "path": f"/lists/{list_id}/members/{hashlib.md5(email.encode()).hexdigest()}",
            "operation_id": f"{prefix}-{i}",
            "body": orjson.dumps({"email_address": email, "status_if_new": "subscribed"}).decode(),
        }
        yield (b"," if i else b"") + orjson.dumps(operation)
    yield b"]}"


def submit(client: httpx.Client, list_id: str, count: int, prefix: str) -> str:
    response = client.post("/batches", content=upserts(list_id, count, prefix))
    response.raise_for_status()
    return str(response.json()["id"])


def status(client: httpx.Client, batch_id: str) -> dict[str, Any]:
    response = client.get(f"/batches/{batch_id}")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


# The statuses a batch moves through, in order; a poll may skip some.
_ORDER = ("pending", "preprocessing", "started", "finalizing", "finished")


def small_batch_seconds(
    client: httpx.Client, list_id: str, count: int, prefix: str
) -> tuple[float, dict[str, float]]:
    """Submit → first status read saying finished, and when each status was first seen
    (seconds after the submit; "submitted" is the submit's answer)."""
    started = time.perf_counter()
    batch_id = submit(client, list_id, count, prefix)
    seen = {"submitted": time.perf_counter() - started}
    while True:
        current = status(client, batch_id)["status"]
        at = time.perf_counter() - started
        for name in _ORDER[: _ORDER.index(current) + 1]:
            seen.setdefault(name, at)
        if current == "finished":
            return at, seen
        time.sleep(POLL_SECONDS)


def phases(seen: dict[str, float]) -> str:
    """Where a small batch's time went, as far as 10 ms polls can tell."""
    return (
        f"submit {seen['submitted']:.3f}, to started {seen['started'] - seen['submitted']:.3f}, "
        f"to finished {seen['finished'] - seen['started']:.3f}"
    )


def wait_for_progress(client: httpx.Client, batch_id: str, since: int) -> dict[str, Any]:
    while True:
        body = status(client, batch_id)
        if body["finished_operations"] > since or body["status"] == "finished":
            return body
        time.sleep(POLL_SECONDS)


def wal_mib(data_dir: Path) -> float:
    """The size of the server's SQLite WAL file(s), MiB (0 when there is none): its high-water
    mark, since SQLite reuses the file from its start after a checkpoint."""
    return sum(path.stat().st_size for path in data_dir.glob("*-wal")) / 2**20


class WalWatch:
    """Samples the frames in use in the server's WAL (`mxFrame` of the wal-index header in the
    `-shm` file, which SQLite keeps in shared memory) every few milliseconds: how far the WAL
    grows before a writer can start it again from the beginning."""

    def __init__(self, data_dir: Path, every: float = 0.005) -> None:
        self.data_dir, self.every = data_dir, every
        self.peak = 0
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WalWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def take_peak(self) -> int:
        """The most frames in use since the last call."""
        peak, self.peak = self.peak, 0
        return peak

    def _run(self) -> None:
        last = 0
        while not self._stop.wait(self.every):
            frames = 0
            for path in self.data_dir.glob("*-shm"):
                try:
                    with path.open("rb") as shm:
                        header = shm.read(24)
                except OSError:
                    continue
                if len(header) == 24:
                    frames += struct.unpack_from("=I", header, 16)[0]
            if frames < last:
                self.restarts += 1
            last = frames
            self.peak = max(self.peak, frames)


def measure(
    big: int,
    small: int,
    rounds: int,
    env: dict[str, str] | None = None,
    *,
    spread: bool = True,
    server_log: Path | None = None,
) -> tuple[list[Figure], dict[str, Any]]:
    with (
        tempfile.TemporaryDirectory() as workdir,
        ServerProcess(Path(workdir), env=env) as server,
    ):
        client = httpx.Client(
            base_url=server.api_url, auth=("x", server.key), timeout=httpx.Timeout(120.0)
        )
        with client, WalWatch(server.data_dir) as watch:
            list_id = client.post("/lists", json=LIST_BODY).json()["id"]
            idle = [
                small_batch_seconds(client, list_id, small, f"idle{r}-")[0] for r in range(rounds)
            ]
            watch.take_peak()
            started = time.perf_counter()
            big_id = submit(client, list_id, big, "big-")
            submitted = time.perf_counter() - started
            busy: list[float] = []
            frames: list[int] = []  # the most WAL frames in use while each small batch ran
            peak = 0
            seen = 0
            for r in range(rounds):
                if spread:
                    # Round r once the big batch is r/(rounds+1) done: early, middle, late.
                    seen = max(seen, (r + 1) * big // (rounds + 1) - 1)
                progress = wait_for_progress(client, big_id, seen)
                if progress["status"] == "finished":
                    break
                peak = max(peak, watch.take_peak())
                took, seen_at = small_batch_seconds(client, list_id, small, f"busy{r}-")
                busy.append(took)
                frames.append(watch.take_peak())
                peak = max(peak, frames[-1])
                seen = status(client, big_id)["finished_operations"]
                print(
                    f"  round {r + 1}: {busy[-1]:.3f} s while the big batch was at "
                    f"{seen:,}/{big:,} ({phases(seen_at)}); WAL frames up to {frames[-1]:,}",
                    flush=True,
                )
            final = wait_for_progress(client, big_id, big)
            while final["status"] != "finished":
                time.sleep(0.2)
                final = status(client, big_id)
            big_seconds = time.perf_counter() - started
            peak = max(peak, watch.take_peak())
            restarts = watch.restarts
            wal_file = wal_mib(server.data_dir)
        if server_log is not None:
            server_log.write_text(server.stdout_path.read_text() + server.stderr_text())
    if not busy:
        raise RuntimeError("the big batch finished before a small one could be submitted")
    worst = max(busy)
    figures = [
        Figure(
            name=f"{small}-op batch beside a {big:,}-op batch (worst of {len(busy)})",
            rate=worst,
            unit="s",
            note=f"median {statistics.median(busy):.3f} s; idle server median "
            f"{statistics.median(idle):.3f} s; target <= {TARGET_SECONDS:g} s: "
            + ("ok" if worst <= TARGET_SECONDS else "MISSED"),
            details={"busy_seconds": busy, "idle_seconds": idle, "wal_frames": frames},
        ),
        Figure(
            name="SQLite WAL during the big batch",
            rate=peak,
            unit="frames",
            note=f"most frames in use ({peak * 4 / 1024:.0f} MiB of 4 KiB pages); "
            f"{restarts} restarts seen; WAL file {wal_file:.1f} MiB at the end",
        ),
        Figure(
            name=f"the {big:,}-op batch, submit → finished",
            rate=big / big_seconds,
            unit="ops/s",
            note=f"{big_seconds:.1f} s, of which the upload {submitted:.1f} s",
        ),
    ]
    parameters = {"big": big, "small": small, "rounds": rounds, "spread": spread}
    return figures, parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--early",
        action="store_true",
        help="each round as soon as the big batch has moved (the first runs of this bench); "
        "by default the rounds are spread over the big batch's run",
    )
    parser.add_argument("--server-log", type=Path, help="keep what the server logged here")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the server (e.g. CONVEYOR_BATCH_WORK_SLICE_SECONDS=0.2)",
    )
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.set)
    figures, parameters = measure(
        args.big, args.small, args.rounds, env, spread=not args.early, server_log=args.server_log
    )
    parameters["env"] = env
    print_table(figures)
    print(f"written to {write_json('fairness', figures, parameters)}")


if __name__ == "__main__":
    main()
