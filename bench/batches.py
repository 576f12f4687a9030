"""Batch endpoint benchmarks (issue 3), each side by side with its comparison in one run.

a. seed: 1,000 member adds in one batch against a real `conveyor serve` (submit → finished →
   archive downloaded) vs the same 1,000 POSTs sent over HTTP with 10 connections.
b. upserts: 100,000 member upserts (PUT with status_if_new) run by the batch engine in-process
   (preprocess → work → finalize, no HTTP) vs the floor: the same SQL statements the
   handlers issue, on the sqlite3 cursor, in the same 500-operation transactions with a
   savepoint per operation and the result rows, and nothing else.
c. million: a 1,000,000-operation body (~330 MB) streamed to `POST /3.0/batches`: ingest
   operations/s (submit until the 200) and the server's peak RSS from submit to finished.
d. status: `GET /3.0/batches/{id}` with 32 connections from wrk.
e. fairness: the time a 10-operation batch takes to finish while the million runs.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from tests.conftest import LIST_BODY
from tests.e2e.server import ServerProcess, free_port

from bench.report import Figure, print_table, write_json
from conveyor.composition import ensure_first_key, open_services
from conveyor.domain.clock import SystemClock, now_iso
from conveyor.domain.ids import hex_id, subscriber_hash
from conveyor.domain.operations import Operation
from conveyor.domain.steps import FollowUp, Step
from conveyor.marketing.routing import invoke
from conveyor.runtime.group_helpers import group_helpers_for
from conveyor.settings import Settings
from conveyor.storage.lists import LIST_CONTEXT
from conveyor.storage.members import _INSERT_MEMBER, _MEMBER_BY_HASH

# --- helpers -------------------------------------------------------------------------------


def member_body(email: str) -> str:
    return orjson.dumps({"email_address": email, "status": "subscribed"}).decode()


def wait_finished(
    client: httpx.Client,
    batch_id: str,
    deadline: float,
    poll: float,
    seen: dict[str, float] | None = None,
    *,
    until: Callable[[dict[str, Any]], bool] = lambda status: status["status"] == "finished",
) -> dict[str, Any]:
    """Poll until finished (or `until` holds of the status); `seen`, if given, gets when each
    status was first read (`time.perf_counter()`)."""
    while True:
        status = client.get(f"/3.0/batches/{batch_id}").json()
        if seen is not None:
            seen.setdefault(status["status"], time.perf_counter())
        if until(status):
            return dict(status)
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} not there yet: {status}")
        time.sleep(poll)


def new_list(client: httpx.Client) -> str:
    response = client.post("/3.0/lists", json=LIST_BODY)
    response.raise_for_status()
    return str(response.json()["id"])


# --- a. seed -------------------------------------------------------------------------------

# How often the seed's client asks for the batch's status. Each answer costs the server ~0.5
# ms of the one GIL the engine runs on: polling every 2 ms took ~45 answers and ~10 ms of a
# ~100 ms batch, every 5 ms half of that, for at most 5 ms of waiting after `finished`.
SEED_POLL_SECONDS = 0.005


# Seed rounds: each a fresh list, the batch then the same adds sent directly. Rounds of one
# build spread by a third on this shared machine: seven make the median steadier than three.
SEED_ROUNDS = 7


def seed(server: ServerProcess) -> list[Figure]:
    """The seed job and the direct path, alternated round by round on one server: medians,
    and the ratio round by round. The first batch meets a server that has run nothing yet
    (statements compiled, caches filled on first use), so it is shown on its own as well."""
    auth = httpx.BasicAuth("bench", server.key)
    # The archive's URL is signed: it is fetched without the key, on a client made (and its
    # connection opened) before the clock starts, as the direct path's client is. A client
    # made inside the timing cost ~50 ms of TLS context set-up, a third of what was measured.
    batch_times: list[float] = []
    direct_times: list[float] = []
    with (
        httpx.Client(base_url=server.base_url, auth=auth, timeout=60) as client,
        httpx.Client(base_url=server.base_url, timeout=60) as downloader,
    ):
        downloader.get("/3.0/ping")
        for seed_round in range(SEED_ROUNDS):
            list_id = new_list(client)
            operations = [
                {
                    "method": "POST",
                    "path": f"/lists/{list_id}/members",
                    "operation_id": f"seed-{i}",
                    "body": member_body(f"seed{seed_round}-{i}@example.org"),
                }
                for i in range(1000)
            ]
            payload = orjson.dumps({"operations": operations})
            started = time.perf_counter()
            batch = client.post("/3.0/batches", content=payload).json()
            status = wait_finished(
                client, batch["id"], time.monotonic() + 60, poll=SEED_POLL_SECONDS
            )
            archive = downloader.get(status["response_body_url"])
            archive.raise_for_status()
            batch_times.append(time.perf_counter() - started)
            direct_times.append(post_with_threads(server, list_id, 1000, 10))
    idle_status = wrk_status(server, batch["id"], "on an idle server, the batch finished")
    ratios = [direct / batch for batch, direct in zip(batch_times, direct_times, strict=True)]
    rounds = ", ".join(f"{t:.3f}" for t in batch_times)
    return [
        *([idle_status] if idle_status else []),
        Figure(
            f"a. seed: 1,000 adds via one batch (median of {SEED_ROUNDS})",
            statistics.median(batch_times),
            "s",
            note=f"target <= 0.1 s and >= 10x direct; {statistics.median(ratios):.1f}x faster "
            f"than direct (median of the rounds' ratios); rounds {rounds} s, the first on a "
            "server that had run no batch",
            details={"archive_bytes": len(archive.content), "rounds_s": batch_times},
        ),
        Figure(
            f"a. same 1,000 POSTs over HTTP, 10 threads, 1 client (median of {SEED_ROUNDS})",
            statistics.median(direct_times),
            "s",
            details={"rounds_s": direct_times},
        ),
    ]


def post_with_threads(server: ServerProcess, list_id: str, count: int, threads: int) -> float:
    """The direct path as well as a user does it: `threads` threads sharing one keep-alive
    httpx client (its pool holds a connection per thread)."""
    auth = httpx.BasicAuth("bench", server.key)
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    with httpx.Client(base_url=server.base_url, auth=auth, limits=limits, timeout=60) as client:
        client.get("/3.0/ping").raise_for_status()
        indexes = iter(range(count))
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    i = next(indexes, None)
                if i is None:
                    return
                client.post(
                    f"/3.0/lists/{list_id}/members", content=member_body(f"direct{i}@example.org")
                ).raise_for_status()

        started = time.perf_counter()
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return time.perf_counter() - started


# --- b. upserts vs the floor ---------------------------------------------------------------


def upserts(count: int, workdir: Path) -> list[Figure]:
    services = open_services(Settings(data_dir=workdir / "upserts"))
    first = ensure_first_key(services)
    assert first is not None
    with services.database.read() as conn:
        account = services.accounts.account_for_key(conn, first.key)
    assert account is not None
    with services.database.write() as conn:
        reply = invoke(
            services.routes, conn, account, "POST", "/lists", {}, orjson.dumps(LIST_BODY),
            api_root="http://127.0.0.1/3.0",
        )  # fmt: skip
    list_id = reply.body["id"]
    operations = [
        Operation(
            "PUT",
            f"/lists/{list_id}/members/{subscriber_hash(f'u{i}@example.org')}",
            {},
            orjson.dumps(
                {"email_address": f"u{i}@example.org", "status_if_new": "subscribed"}
            ).decode(),
            f"op-{i}",
        )
        for i in range(count)
    ]
    with services.database.write() as conn:
        batch_id = services.batch_store.create_ingesting(conn, account.pk, "http://127.0.0.1/3.0")
        for start in range(0, count, 5000):
            services.batch_store.insert_operations(
                conn, batch_id, start, operations[start : start + 5000]
            )
        services.batch_store.publish(conn, batch_id, count)

    engine = services.engine
    # As `conveyor serve` runs it: with its helper processes (docs/architecture.md
    # decision 21), started before the clock as a server that has run a batch has them.
    helpers = engine.preparer = group_helpers_for(services)
    if helpers is not None:
        helpers.warm_up(timeout=60)
    steps = {Step.PREPROCESS: engine.preprocess, Step.WORK: engine.work}
    started = time.perf_counter()
    cpu_started = time.process_time() + helper_cpu_seconds()
    pending = [FollowUp(Step.PREPROCESS, batch_id)]
    while pending:
        follow_up = pending.pop()
        if follow_up.step == Step.FINALIZE:
            break
        pending.extend(steps[follow_up.step](follow_up.target_id))
    engine_seconds = time.perf_counter() - started
    # The helper processes' CPU too (docs/architecture.md decision 21): all the work's CPU.
    engine_cpu_us = (time.process_time() + helper_cpu_seconds() - cpu_started) / count * 1e6
    with services.database.read() as conn:
        row = services.batch_store.get(conn, batch_id)
    assert row is not None and row.finished_operations == count, row
    engine_rate = count / engine_seconds

    if helpers is not None:
        helpers.close()
    floor_rate, floor_cpu_us = upsert_floor(
        services.settings.resolved_database_url, account.pk, list_id, count
    )
    services.close()
    ratio = engine_rate / floor_rate
    return [
        Figure(
            "b. 100k upserts: batch engine",
            engine_rate,
            "ops/s",
            note=f"{ratio:.2f}x the floor (target >= 0.3x); CPU {engine_cpu_us:.0f} us/op, "
            f"{floor_cpu_us / engine_cpu_us:.2f}x the floor by CPU",
            details={"cpu_us_per_op": engine_cpu_us},
        ),
        Figure(
            "b. floor: same SQL, same groups, sqlite3",
            floor_rate,
            "ops/s",
            note=f"CPU {floor_cpu_us:.0f} us/op",
            details={"cpu_us_per_op": floor_cpu_us},
        ),
    ]


def helper_cpu_seconds() -> float:
    """CPU seconds of this process's children so far (the group helpers, while alive)."""
    return sum(sum(child.cpu_times()[:2]) for child in psutil.Process().children(recursive=True))


def upsert_floor(
    database_url: str, account_pk: int, list_id: str, count: int
) -> tuple[float, float]:
    """The statements a PUT of a new member issues, in 500-op transactions, on sqlite3:
    operations/s and CPU µs per operation (the machine is shared: CPU is the steadier)."""
    path = database_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    dialect = sqlite_dialect.dialect()
    list_sql, list_pos = LIST_CONTEXT._sql(dialect)
    member_sql, member_pos = _MEMBER_BY_HASH._sql(dialect)
    insert_sql, insert_pos = _INSERT_MEMBER["sqlite"]._sql(dialect)
    assert list_pos and member_pos and insert_pos
    result_sql = (
        "INSERT INTO batch_results (batch_id, seq, page, status_code, operation_id, response) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    )
    member_json = orjson.dumps({"email_type": "html", "merge_fields": {}, "tags": []}).decode()
    batch_id = hex_id(10)
    started = time.perf_counter()
    cpu_started = time.process_time()
    for group_start in range(0, count, 500):
        conn.execute("BEGIN IMMEDIATE")
        rows = []
        for i in range(group_start, min(group_start + 500, count)):
            email = f"floor{i}@example.org"
            hashed = subscriber_hash(email)
            conn.execute("SAVEPOINT op")
            list_params = {"list_id": list_id, "account_pk": account_pk}
            list_pk = conn.execute(list_sql, [list_params[n] for n in list_pos]).fetchall()[0][0]
            found = {"list_pk": list_pk, "h": hashed}
            conn.execute(member_sql, [found[n] for n in member_pos]).fetchone()
            values = {
                "account_pk": account_pk, "list_pk": list_pk, "subscriber_hash": hashed,
                "email_address": email, "unique_email_id": hex_id(10), "contact_id": hex_id(32),
                "status": "subscribed", "data": member_json, "last_changed": now_iso(SystemClock()),
            }  # fmt: skip
            conn.execute(insert_sql, [values[n] for n in insert_pos]).fetchone()
            conn.execute("RELEASE op")
            rows.append((batch_id, i, 0, 200, f"op-{i}", member_json))
        conn.executemany(result_sql, rows)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    cpu_us = (time.process_time() - cpu_started) / count * 1e6
    conn.close()
    return count / seconds, cpu_us


# --- c/d/e. the million, the status endpoint, fairness -------------------------------------


def million_body(path: Path, list_id: str, count: int) -> int:
    with path.open("wb") as out:
        out.write(b'{"operations":[')
        for i in range(count):
            if i:
                out.write(b",")
            email = f"m{i}@example.org"
            out.write(
                orjson.dumps(
                    {
                        "method": "PUT",
                        "path": f"/lists/{list_id}/members/{subscriber_hash(email)}",
                        "operation_id": f"m-{i}",
                        "body": orjson.dumps(
                            {
                                "email_address": email,
                                "status_if_new": "subscribed",
                                "merge_fields": {"FNAME": "Ann", "LNAME": "Example"},
                            }
                        ).decode(),
                    }
                )
            )
        out.write(b"]}")
    return path.stat().st_size


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                rss = self.process.memory_info().rss
                rss += sum(child.memory_info().rss for child in self.process.children(True))
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def streamed(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            yield chunk


def million(server: ServerProcess, workdir: Path, count: int) -> list[Figure]:
    auth = httpx.BasicAuth("bench", server.key)
    figures: list[Figure] = []
    with httpx.Client(base_url=server.base_url, auth=auth, timeout=600) as client:
        list_id = new_list(client)
        body_path = workdir / "million.json"
        size = million_body(body_path, list_id, count)
        with RssSampler(server.pid) as rss:
            started = time.perf_counter()
            response = client.post("/3.0/batches", content=streamed(body_path))
            response.raise_for_status()
            ingest_seconds = time.perf_counter() - started
            big = response.json()
            # Fairness is about a batch that runs: the small one arrives once the large one
            # has committed work, not while it is still being planned.
            running = wait_finished(
                client, big["id"], time.monotonic() + 600, 0.05,
                until=lambda status: status["finished_operations"] > 0,
            )  # fmt: skip
            running_at = int(running["finished_operations"])
            small_started = time.perf_counter()
            small = client.post(
                "/3.0/batches",
                json={"operations": [
                    {"method": "POST", "path": f"/lists/{list_id}/members",
                     "body": member_body(f"small{i}@example.org")} for i in range(10)
                ]},
            ).json()  # fmt: skip
            wait_finished(client, small["id"], time.monotonic() + 600, poll=0.01)
            small_seconds = time.perf_counter() - small_started
            big_status = client.get(f"/3.0/batches/{big['id']}").json()
            status_figure = wrk_status(server, big["id"], "while the 1M batch runs")
            seen: dict[str, float] = {}
            final = wait_finished(client, big["id"], time.monotonic() + 3600, 0.25, seen)
            run_seconds = time.perf_counter() - started
    figures.append(
        Figure(
            "c. 1M-op body: ingest",
            count / ingest_seconds,
            "ops/s",
            target=100_000,
            note=f"{size / 2**20:.0f} MiB in {ingest_seconds:.1f} s",
        )
    )
    figures.append(
        Figure(
            "c. 1M-op batch: server peak RSS",
            rss.peak / 1e6,  # the target is in MB (10^6 bytes)
            "MB",
            note=f"target <= 250 MB; submit to finished {run_seconds:.0f} s "
            f"({count / run_seconds:,.0f} ops/s); {final['errored_operations']} errored; "
            f"{phases(seen, started)}",
            details={"submit_to_finished_s": run_seconds},
        )
    )
    if status_figure is not None:
        figures.append(status_figure)
    figures.append(
        Figure(
            "e. fairness: 10-op batch during the 1M",
            small_seconds,
            "s",
            note=f"sent when the 1M batch had run {running_at:,} operations; it was "
            f"{big_status['status']} at {big_status['finished_operations']:,} when the small "
            "one finished",
        )
    )
    return figures


def phases(seen: dict[str, float], started: float) -> str:
    """When each status was first seen, in seconds since the submit began (±0.25 s; a phase
    over before polling began, while the small batch and wrk ran, is not seen)."""
    return "first seen: " + ", ".join(f"{name} {at - started:.1f} s" for name, at in seen.items())


def wrk_status(server: ServerProcess, batch_id: str, when: str) -> Figure | None:
    exe = shutil.which("wrk")
    if exe is None:
        print("wrk is not installed (apt-get install -y wrk): skipping d.")
        return None
    import base64

    token = base64.b64encode(f"bench:{server.key}".encode()).decode()
    done = subprocess.run(
        [exe, "-t2", "-c32", "-d10s", "--latency", "-H", f"Authorization: Basic {token}",
         f"{server.base_url}/3.0/batches/{batch_id}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rate = next(
        float(line.split()[1])
        for line in done.stdout.splitlines()
        if line.startswith("Requests/sec")
    )
    non_2xx = [line for line in done.stdout.splitlines() if "Non-2xx" in line]
    return Figure(
        "d. GET /3.0/batches/{id}, 32 conns (wrk)",
        rate,
        "req/s",
        target=2_000,
        note=f"{when}; connection limit raised to 64"
        + (f"; {non_2xx[0].strip()}" if non_2xx else ""),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upserts", type=int, default=100_000)
    parser.add_argument("--million", type=int, default=1_000_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=["seed", "upserts", "million"])
    args = parser.parse_args()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as temp:
        workdir = Path(temp)
        if "seed" not in args.skip:
            env = {"CONVEYOR_MAX_CONCURRENT_REQUESTS": "64"}  # for d.'s 32 connections
            with ServerProcess(workdir / "seed", port=free_port(), env=env) as server:
                figures += seed(server)
        if "upserts" not in args.skip:
            figures += upserts(args.upserts, workdir)
        if "million" not in args.skip:
            # 32 connections of one account: the 10-connection limit would answer most of
            # the status polls with 429; raised here so d. measures the endpoint.
            env = {"CONVEYOR_MAX_CONCURRENT_REQUESTS": "64"}
            with ServerProcess(workdir / "million", port=free_port(), env=env) as server:
                figures += million(server, workdir, args.million)
    print_table(figures)
    path = write_json("batches", figures, vars(args))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
