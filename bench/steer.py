"""Seeing into a batch (issue 10): a filtered operations page of a 1,000,000-operation batch,
and the NDJSON results of it, each beside its comparison from the same run.

A real `conveyor serve` on a fresh data dir runs one batch of 1,000,000 operations (GET /ping,
every 100th a GET of a missing list: 10,000 failures). Then, over HTTP with one keep-alive
connection, `--requests` sequential requests of each kind:

a. operations pages: `status=failed` at the start and in the middle of the failures,
   `operation_id=` one id, and an unfiltered page in the middle of the batch, each beside
   `GET /3.0/batches/{id}` (one indexed row: the floor of any request) and beside the same
   failed page read in SQLite without its index (what the page would cost unindexed).
b. results: the whole NDJSON stream (1,000,000 lines) read raw and parsed, with the server's
   peak RSS while it streams, beside the archive of the same batch downloaded and parsed
   (every `response` string decoded), which is what a client does without NDJSON.
c. index cost: what the operation-id index costs every submit. Over HTTP: a 200,000-operation
   body (member PUTs with merge fields, as bench.batches c.) posted to two servers, one
   without the index, alternating, each batch canceled as soon as it is stored. In-process:
   the same number of operations stored in ingest pages with and without the index.
"""

from __future__ import annotations

import argparse
import io
import sqlite3
import statistics
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from tests.e2e.server import ServerProcess, free_port

from bench.batches import RssSampler
from bench.report import Figure, print_table, write_json
from conveyor.domain.operations import Operation
from conveyor.storage.batches import BatchStore
from conveyor.storage.database import open_database
from conveyor.storage.migrate import upgrade

FAIL_EVERY = 100


def batch_body(total: int) -> bytes:
    ping = orjson.dumps({"method": "GET", "path": "/ping", "operation_id": "p-%d"}).decode()
    missing = orjson.dumps(
        {"method": "GET", "path": "/lists/missing", "operation_id": "f-%d"}
    ).decode()
    items = ",".join(
        (missing if i % FAIL_EVERY == FAIL_EVERY - 1 else ping) % i for i in range(total)
    )
    return ('{"operations":[' + items + "]}").encode()


def latencies(call: Callable[[], httpx.Response], requests: int) -> dict[str, float]:
    call()  # warm: connection, caches
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    cuts = statistics.quantiles(times, n=100)
    return {"p50": statistics.median(times), "p99": cuts[98], "mean": statistics.fmean(times)}


def page_figure(name: str, latency: dict[str, float], note: str = "") -> Figure:
    return Figure(name, 1000 / latency["mean"], "req/s", latency_ms=latency, note=note)


def sqlite_ms(path: Path, sql: str, params: tuple[Any, ...], repeat: int) -> dict[str, float]:
    database = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            database.execute(sql, params).fetchall()
            times.append((time.perf_counter() - started) * 1000)
    finally:
        database.close()
    return {"p50": statistics.median(times), "p99": max(times), "mean": statistics.fmean(times)}


def pages(server: ServerProcess, total: int, requests: int) -> tuple[list[Figure], str]:
    figures: list[Figure] = []
    with httpx.Client(base_url=server.api_url, auth=("bench", server.key), timeout=600) as api:
        started = time.monotonic()
        body = batch_body(total)
        batch = api.post("/batches", content=body, headers={"Content-Type": "application/json"})
        batch.raise_for_status()
        batch_id = batch.json()["id"]
        running: list[float] = []
        while True:
            status = api.get(f"/batches/{batch_id}").json()
            if status["status"] == "finished":
                break
            if status["status"] == "started":
                begun = time.perf_counter()
                api.get(
                    f"/batches/{batch_id}/operations", params={"status": "failed"}
                ).raise_for_status()
                running.append((time.perf_counter() - begun) * 1000)
            time.sleep(1.0)
        print(f"batch of {total:,} finished in {time.monotonic() - started:.0f} s")
        failures = total // FAIL_EVERY
        url = f"/batches/{batch_id}/operations"

        def get(**params: Any) -> Callable[[], httpx.Response]:
            return lambda: api.get(url, params=params)

        floor = latencies(lambda: api.get(f"/batches/{batch_id}"), requests)
        figures.append(page_figure("floor: GET /batches/{id}", floor, "one indexed row"))
        for name, call in [
            ("status=failed, first page", get(status="failed")),
            (
                f"status=failed, offset {failures // 2:,}",
                get(status="failed", offset=failures // 2),
            ),
            ("operation_id=one id", get(operation_id=f"f-{total // 2 - 1}")),
            (f"unfiltered, offset {total // 2:,}", get(offset=total // 2)),
            ("status=failed, count=1000", get(status="failed", count=1000)),
        ]:
            latency = latencies(call, requests)
            ratio = latency["p50"] / floor["p50"]
            figures.append(page_figure(name, latency, f"p50 {ratio:.1f}x the floor"))
        if running:
            figures.append(
                Figure(
                    "status=failed while it ran",
                    len(running),
                    "samples",
                    latency_ms={"p50": statistics.median(running), "p99": max(running)},
                )
            )
        # The same failed page, read from SQLite with and without its partial index.
        database = server.data_dir / "conveyor.db"
        query = (
            "SELECT seq, page FROM batch_results {hint} WHERE batch_id = ? AND "
            "(status_code < 200 OR status_code > 299) ORDER BY seq, page LIMIT 10 OFFSET ?"
        )
        params = (batch_id, failures // 2)
        indexed = sqlite_ms(
            database, query.format(hint="INDEXED BY ix_batch_results_failed"), params, 20
        )
        unindexed = sqlite_ms(database, query.format(hint="NOT INDEXED"), params, 3)
        figures.append(
            Figure(
                "SQL: failed page, partial index", 1000 / indexed["mean"], "q/s", latency_ms=indexed
            )
        )
        figures.append(
            Figure(
                "SQL: failed page, no index",
                1000 / unindexed["mean"],
                "q/s",
                latency_ms=unindexed,
                note=f"{unindexed['p50'] / indexed['p50']:,.0f}x the indexed query",
            )
        )
    return figures, batch_id


def results(server: ServerProcess, batch_id: str, total: int) -> list[Figure]:
    figures: list[Figure] = []
    process = psutil.Process(server.pid)
    with httpx.Client(base_url=server.api_url, auth=("bench", server.key), timeout=600) as api:
        idle_rss = process.memory_info().rss
        url = f"/batches/{batch_id}/results.ndjson"
        for parsed in (False, True):
            lines = size = 0
            with RssSampler(server.pid) as rss:
                started = time.perf_counter()
                with api.stream("GET", url) as response:
                    response.raise_for_status()
                    if parsed:
                        for line in response.iter_lines():
                            orjson.loads(line)
                            lines += 1
                    else:
                        for chunk in response.iter_raw():
                            lines += chunk.count(b"\n")
                            size += len(chunk)
                seconds = time.perf_counter() - started
            assert lines == total, lines
            name = "NDJSON, parsed by the client" if parsed else "NDJSON, read raw"
            note = f"server peak RSS {rss.peak / 2**20:.0f} MiB (idle {idle_rss / 2**20:.0f})"
            if size:
                note += f", {size / 2**20:.0f} MiB"
            figures.append(
                Figure(name, lines / seconds, "lines/s", note=note, details={"seconds": seconds})
            )
        status = api.get(f"/batches/{batch_id}").json()
        started = time.perf_counter()
        archive = httpx.get(status["response_body_url"], timeout=600)
        archive.raise_for_status()
        downloaded = time.perf_counter() - started
        records = 0
        with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member)
                assert handle is not None
                for record in orjson.loads(handle.read()):
                    orjson.loads(record["response"]) if record["response"] else None
                    records += 1
        seconds = time.perf_counter() - started
        assert records == total
        figures.append(
            Figure(
                "beside: archive downloaded and parsed",
                records / seconds,
                "records/s",
                note=f"download {downloaded:.1f} s, {len(archive.content) / 2**20:.0f} MiB gz",
                details={"seconds": seconds},
            )
        )
    return figures


def index_cost(workdir: Path, operations: int, rounds: int) -> list[Figure]:
    """Ingest pages of `operations` operations with and without the operation-id index."""
    store = BatchStore(_Clock())
    page = [Operation("GET", "/ping", {}, None, f"op-{i}") for i in range(5_000)]
    timings: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(rounds):
        for with_index in (True, False) if round_ % 2 == 0 else (False, True):
            path = workdir / f"ingest-{round_}-{with_index}.db"
            database = open_database(f"sqlite:///{path}")
            upgrade(database)
            if not with_index:
                with database.write() as conn:
                    conn.exec_driver_sql("DROP INDEX ix_batch_operations_operation_id")
            with database.write() as conn:
                batch_id = store.create_ingesting(conn, 1, "http://bench/3.0")
            started = time.perf_counter()
            for first in range(0, operations, len(page)):
                with database.write() as conn:
                    store.insert_operations(conn, batch_id, first, page)
            timings[with_index].append(operations / (time.perf_counter() - started))
            database.dispose()
            path.unlink()
    best = {key: max(values) for key, values in timings.items()}
    return [
        Figure("ingest pages, with the operation-id index", best[True], "ops/s"),
        Figure(
            "ingest pages, without it",
            best[False],
            "ops/s",
            note=f"the index costs {1 - best[True] / best[False]:.0%}",
        ),
    ]


def ingest_over_http(workdir: Path, operations: int, rounds: int) -> list[Figure]:
    template = orjson.dumps(
        {
            "method": "PUT",
            "path": "/lists/LIST/members/%(hash)s",
            "operation_id": "row-%(i)d",
            "body": orjson.dumps(
                {
                    "email_address": "u%(i)d@example.org",
                    "status_if_new": "subscribed",
                    "merge_fields": {"FNAME": "First %(i)d", "LNAME": "Last"},
                }
            ).decode(),
        }
    ).decode()
    items = ",".join(template % {"i": i, "hash": f"{i:032x}"} for i in range(operations))
    body = ('{"operations":[' + items + "]}").encode()
    rates: dict[bool, list[float]] = {True: [], False: []}
    with (
        ServerProcess(workdir / "indexed", port=free_port()) as indexed,
        ServerProcess(workdir / "plain", port=free_port()) as plain,
    ):
        database = sqlite3.connect(plain.data_dir / "conveyor.db")
        database.execute("DROP INDEX ix_batch_operations_operation_id")
        database.close()
        for round_ in range(rounds):
            order = [(True, indexed), (False, plain)]
            for with_index, server in order if round_ % 2 == 0 else order[::-1]:
                with httpx.Client(
                    base_url=server.api_url, auth=("bench", server.key), timeout=600
                ) as api:
                    started = time.perf_counter()
                    answer = api.post(
                        "/batches", content=body, headers={"Content-Type": "application/json"}
                    )
                    seconds = time.perf_counter() - started
                    answer.raise_for_status()
                    # Nothing of it needs to run: the next round measures an idle server (a
                    # small batch may have finished already: 400, nothing left to cancel).
                    canceled = api.post(f"/batches/{answer.json()['id']}/cancel")
                    assert canceled.status_code in (200, 400), canceled.text
                rates[with_index].append(operations / seconds)
    best = {key: max(values) for key, values in rates.items()}
    return [
        Figure("ingest over HTTP, with the operation-id index", best[True], "ops/s"),
        Figure(
            "ingest over HTTP, without it",
            best[False],
            "ops/s",
            note=f"the index costs {1 - best[True] / best[False]:.0%}",
            details={"rates": {str(k): v for k, v in rates.items()}},
        ),
    ]


class _Clock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--ingest", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=["batch", "index"])
    args = parser.parse_args()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as temp:
        workdir = Path(temp)
        if "batch" not in args.skip:
            with ServerProcess(workdir / "server", port=free_port()) as server:
                found, batch_id = pages(server, args.operations, args.requests)
                figures += found
                figures += results(server, batch_id, args.operations)
        if "index" not in args.skip:
            figures += ingest_over_http(workdir, args.ingest, args.rounds)
            figures += index_cost(workdir, args.ingest, args.rounds)
    print_table(figures)
    path = write_json("steer", figures, vars(args))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
