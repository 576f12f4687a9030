"""Fairness: a small batch submitted while a huge one runs, against a real `conveyor serve`.

Issue 9 item 6: a 10-operation batch submitted while a 200,000-operation batch runs must
finish within 1 s. Measured side by side in one run: the same 10-operation batch on the idle
server first (the floor), then several times while the big batch runs (each submitted once
the big batch has shown progress since the last one finished), from submit to the status
read that first says `finished`.

python -m bench.fairness [--big 200000] [--small 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
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


def small_batch_seconds(client: httpx.Client, list_id: str, count: int, prefix: str) -> float:
    """Submit → first status read saying finished."""
    started = time.perf_counter()
    batch_id = submit(client, list_id, count, prefix)
    while status(client, batch_id)["status"] != "finished":
        time.sleep(POLL_SECONDS)
    return time.perf_counter() - started


def wait_for_progress(client: httpx.Client, batch_id: str, since: int) -> dict[str, Any]:
    while True:
        body = status(client, batch_id)
        if body["finished_operations"] > since or body["status"] == "finished":
            return body
        time.sleep(POLL_SECONDS)


def measure(big: int, small: int, rounds: int) -> tuple[list[Figure], dict[str, Any]]:
    with tempfile.TemporaryDirectory() as workdir, ServerProcess(Path(workdir)) as server:
        client = httpx.Client(
            base_url=server.api_url, auth=("x", server.key), timeout=httpx.Timeout(120.0)
        )
        with client:
            list_id = client.post("/lists", json=LIST_BODY).json()["id"]
            idle = [small_batch_seconds(client, list_id, small, f"idle{r}-") for r in range(rounds)]
            started = time.perf_counter()
            big_id = submit(client, list_id, big, "big-")
            submitted = time.perf_counter() - started
            busy: list[float] = []
            seen = 0
            for r in range(rounds):
                progress = wait_for_progress(client, big_id, seen)
                if progress["status"] == "finished":
                    break
                busy.append(small_batch_seconds(client, list_id, small, f"busy{r}-"))
                seen = status(client, big_id)["finished_operations"]
                print(
                    f"  round {r + 1}: {busy[-1]:.3f} s while the big batch was at "
                    f"{seen:,}/{big:,}",
                    flush=True,
                )
            final = wait_for_progress(client, big_id, big)
            while final["status"] != "finished":
                time.sleep(0.2)
                final = status(client, big_id)
            big_seconds = time.perf_counter() - started
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
            details={"busy_seconds": busy, "idle_seconds": idle},
        ),
        Figure(
            name=f"the {big:,}-op batch, submit → finished",
            rate=big / big_seconds,
            unit="ops/s",
            note=f"{big_seconds:.1f} s, of which the upload {submitted:.1f} s",
        ),
    ]
    parameters = {"big": big, "small": small, "rounds": rounds}
    return figures, parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures, parameters = measure(args.big, args.small, args.rounds)
    print_table(figures)
    print(f"written to {write_json('fairness', figures, parameters)}")


if __name__ == "__main__":
    main()
