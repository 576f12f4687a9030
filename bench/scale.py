"""Scale out: the 100,000-upsert batch on PostgreSQL + Redis, 1 worker process vs 2.

    .venv/bin/python -m bench.scale                    # 100,000 upserts, --threads 2, 1 round
    .venv/bin/python -m bench.scale --rounds 2 --profile

Each run is a deployment of real processes, as `docs/deploy.md` describes: `conveyor api`,
`conveyor worker --processes N --threads T` and `conveyor scheduler`, on a fresh PostgreSQL
database, a flushed Redis DB and a shared blob folder. One batch of `--upserts` member
upserts (`PUT /lists/{id}/members/{hash}` with `status_if_new`, every address new) is
submitted over HTTP and polled until finished. `CONVEYOR_BATCH_WORKER_THREADS` is N x T so
that the batch has a chunk in flight for every worker thread.

Reported per configuration: operations/s from the accepted submit to `finished` (and over the
execution alone, `started` to `finalizing`), and where the machine's CPU went meanwhile: the
worker processes, PostgreSQL's backends for this database, the API, Redis, and everything
else. `--profile` also samples one worker process with py-spy (installed separately: `pip
install py-spy`), to say how much of a worker thread's time is spent waiting on PostgreSQL.
The configurations alternate round by round, so that noise from the rest of the machine
falls on both alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from tests.conftest import LIST_BODY
from tests.e2e.scaled import Deployment, Infrastructure, flush_redis, fresh_database

from bench.report import Figure, machine, write_json
from conveyor.domain.ids import subscriber_hash

POSTGRES_ADMIN_URL = os.environ.get(
    "CONVEYOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CONVEYOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
RATIO_TARGET = 1.5
POLL = 0.05


@dataclass
class CpuSplit:
    """CPU seconds by owner over one run, and the machine's capacity in that time."""

    seconds: dict[str, float] = field(default_factory=dict)
    capacity: float = 0.0  # wall seconds x cores
    busy: float = 0.0  # the machine's non-idle CPU seconds

    def share(self, owner: str) -> float:
        return self.seconds.get(owner, 0.0) / self.capacity if self.capacity else 0.0

    @property
    def stack_seconds(self) -> float:
        """CPU seconds of Conveyor's deployment: its processes, PostgreSQL and Redis."""
        return sum(v for owner, v in self.seconds.items() if owner != "other")

    def line(self) -> str:
        owners = ["workers", "postgres", "api", "scheduler", "redis", "other"]
        parts = [f"{owner} {self.share(owner):.0%}" for owner in owners]
        idle = 1 - self.busy / self.capacity if self.capacity else 0.0
        return ", ".join(parts) + f", idle {idle:.0%}"


def process_times() -> dict[int, float]:
    times: dict[int, float] = {}
    for proc in psutil.process_iter(["cpu_times"]):
        cpu = proc.info["cpu_times"]
        if cpu is not None:
            times[proc.pid] = cpu.user + cpu.system
    return times


def subtrans_lookups() -> int:
    """PostgreSQL's pg_subtrans cache hits so far (the whole server: a delta over a run).

    A transaction with more than 64 subtransactions (here: a savepoint per operation) makes
    every snapshot taken meanwhile "suboverflowed", and then visibility checks look rows'
    transaction ids up in pg_subtrans; a high count per operation is that cost.
    """
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL) as conn:
        row = conn.execute("SELECT blks_hit FROM pg_stat_slru WHERE name = 'Subtrans'").fetchone()
    return int(row[0]) if row else 0


def machine_busy() -> float:
    cpu = psutil.cpu_times()
    return float(sum(cpu) - cpu.idle - getattr(cpu, "iowait", 0.0))


def owners(deployment: Deployment, database: str) -> dict[int, str]:
    """pid → owner, for the processes alive now."""
    labels: dict[int, str] = {}
    for label, roles in (
        ("workers", deployment.workers),
        ("api", deployment.apis),
        ("scheduler", deployment.schedulers),
    ):
        for role in roles:
            for proc in role.group():
                labels[proc.pid] = label
    for proc in psutil.process_iter(["name", "cmdline"]):
        name = proc.info["name"] or ""
        cmdline = " ".join(proc.info["cmdline"] or [])
        if name.startswith("postgres") and f" {database} " in f" {cmdline} ":
            labels[proc.pid] = "postgres"
        elif name.startswith("redis-server"):
            labels[proc.pid] = "redis"
    return labels


@dataclass
class Run:
    processes: int
    threads: int
    operations: int
    submit_seconds: float
    total_seconds: float  # accepted → finished
    execution_seconds: float  # first seen started → first seen finalizing
    cpu: CpuSplit
    subtrans_per_operation: float = 0.0
    profile: str = ""

    @property
    def rate(self) -> float:
        return self.operations / self.total_seconds

    @property
    def execution_rate(self) -> float:
        return self.operations / self.execution_seconds

    @property
    def stack_cpu_ms_per_operation(self) -> float:
        return self.cpu.stack_seconds * 1000 / self.operations

    @property
    def stack_cores(self) -> float:
        """Cores the deployment kept busy on average over the run."""
        return self.cpu.stack_seconds / (self.cpu.capacity / (os.cpu_count() or 1))

    @property
    def ceiling(self) -> float:
        """Operations/s if the deployment had every core to itself at this CPU cost."""
        return (os.cpu_count() or 1) * 1000 / self.stack_cpu_ms_per_operation


def give_statistics(api: httpx.Client, database_url: str, members: int = 2_000) -> None:
    """Make the database look like one in use: some members on another list, then ANALYZE.

    On a database whose `members` table was never analyzed, PostgreSQL 15 plans the lookup
    `list_pk = ? AND subscriber_hash = ?` on `ix_members_list_status` (list_pk only, then a
    filter) instead of the unique index: every lookup reads all of the list's members, and
    the batch runs in quadratic time until autovacuum's ANALYZE (a minute or more) replaces
    the cached plans. `--fresh` measures that case.
    """
    import psycopg

    list_id = api.post("lists", json=LIST_BODY).raise_for_status().json()["id"]
    for start in range(0, members, 500):
        page = [
            {"email_address": f"warm{i}@example.org", "status": "subscribed"}
            for i in range(start, min(start + 500, members))
        ]
        api.post(f"lists/{list_id}", json={"members": page}).raise_for_status()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def upsert_body(list_id: str, count: int) -> bytes:
    items = []
    for i in range(count):
        email = f"u{i}@example.org"
        body = orjson.dumps({"email_address": email, "status_if_new": "subscribed"}).decode()
        path = f"/lists/{list_id}/members/{subscriber_hash(email)}"
        items.append({"method": "PUT", "path": path, "operation_id": f"op-{i}", "body": body})
    return orjson.dumps({"operations": items})


def run_once(
    workdir: Path,
    processes: int,
    threads: int,
    count: int,
    *,
    profile: bool,
    env: dict[str, str],
    fresh: bool,
) -> Run:
    with fresh_database(POSTGRES_ADMIN_URL, prefix="conveyor_bench") as database_url:
        flush_redis(REDIS_URL)
        shared = workdir / "blobs"
        infra = Infrastructure(database_url, REDIS_URL, shared.as_uri())
        deployment = Deployment(
            workdir,
            infra,
            apis=1,
            workers=1,
            worker_args=("--processes", str(processes), "--threads", str(threads)),
            env={"CONVEYOR_BATCH_WORKER_THREADS": str(processes * threads), **env},
        )
        with deployment:
            key = deployment.new_key()
            with deployment.client(0, key, timeout=600) as api:
                if not fresh:
                    give_statistics(api, database_url)
                list_id = api.post("lists", json=LIST_BODY).raise_for_status().json()["id"]
                body = upsert_body(list_id, count)
                database = database_url.rsplit("/", 1)[1]
                subtrans_before = subtrans_lookups()
                before, busy_before = process_times(), machine_busy()
                started = time.monotonic()
                submitted = api.post(
                    "batches", content=body, headers={"Content-Type": "application/json"}
                ).raise_for_status()
                accepted = time.monotonic()
                spy = start_profile(deployment, workdir, count) if profile else None
                batch_id = submitted.json()["id"]
                seen: dict[str, float] = {}
                deadline = accepted + 1800
                while True:
                    status = api.get(f"batches/{batch_id}").raise_for_status().json()
                    seen.setdefault(status["status"], time.monotonic())
                    if status["status"] == "finished":
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"not finished: {status}")
                    time.sleep(POLL)
                finished = seen["finished"]
                labels = owners(deployment, database)
                after, busy_after = process_times(), machine_busy()
                subtrans = subtrans_lookups() - subtrans_before
                profile_text = stop_profile(spy) if spy else ""
            assert status["finished_operations"] == count, status
            assert status["errored_operations"] == 0, status
    cpu = CpuSplit(capacity=(finished - started) * (os.cpu_count() or 1))
    cpu.busy = busy_after - busy_before
    spent: dict[str, float] = {}
    for pid, total in after.items():
        owner = labels.get(pid, "other")
        spent[owner] = spent.get(owner, 0.0) + total - before.get(pid, 0.0)
    # Processes that ended meanwhile are missing from `after`; "other" is the remainder.
    known = sum(value for owner, value in spent.items() if owner != "other")
    spent["other"] = max(0.0, cpu.busy - known)
    cpu.seconds = dict(spent)
    execution = seen.get("finalizing", finished) - seen.get("started", accepted)
    return Run(
        processes,
        threads,
        count,
        submit_seconds=accepted - started,
        total_seconds=finished - accepted,
        execution_seconds=execution,
        cpu=cpu,
        subtrans_per_operation=subtrans / count,
        profile=profile_text,
    )


# --- py-spy --------------------------------------------------------------------------------


@dataclass
class Spy:
    process: subprocess.Popen[bytes]
    output: Path


def start_profile(deployment: Deployment, workdir: Path, count: int) -> Spy | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        print("py-spy is not installed (pip install py-spy): no profile")
        return None
    # The worker process that runs actors: the busiest of the group once work has begun.
    time.sleep(2.0)
    group = deployment.workers[0].group()
    for proc in group:
        proc.cpu_percent(None)
    time.sleep(1.0)
    busiest = max(group, key=lambda proc: proc.cpu_percent(None))
    output = workdir / "worker.pyspy.txt"
    command = [exe, "record", "--idle", "-f", "raw", "-r", "50", "-d", "20", "-o", str(output),
               "-p", str(busiest.pid)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Spy(process, output)


def stop_profile(spy: Spy) -> str:
    try:
        spy.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        spy.process.kill()
        spy.process.wait()
    if not spy.output.exists():
        return "py-spy wrote nothing (is ptrace allowed?)"
    return summarize_profile(spy.output.read_text())


def summarize_profile(raw: str) -> str:
    """Where the worker threads running chunks spend their time (py-spy raw samples)."""
    buckets: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if "BatchEngine.work" not in stack:
            continue
        frames = stack.split(";")
        leaf = frames[-1]
        if "psycopg" in leaf and "wait" in leaf:
            bucket = "waiting on PostgreSQL"
        elif any("psycopg" in frame for frame in frames):
            bucket = "psycopg (Python side)"
        elif any("sqlalchemy" in frame for frame in frames):
            bucket = "SQLAlchemy"
        else:
            bucket = "Conveyor and other Python"
        buckets[bucket] += int(count)
    total = sum(buckets.values())
    if not total:
        return "no samples inside BatchEngine.work"
    return ", ".join(f"{name} {n / total:.0%}" for name, n in buckets.most_common())


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upserts", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2, help="threads per worker process")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="py-spy one worker process")
    parser.add_argument("--keep", action="store_true", help="keep the logs' folder")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="skip the warm-up (members + ANALYZE): a never-analyzed database",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for every role, e.g. CONVEYOR_BATCH_GROUP_SIZE=50",
    )
    args = parser.parse_args(argv)

    env = dict(item.split("=", 1) for item in args.set)
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-bench-scale-"))
    runs: list[Run] = []
    try:
        for round_index in range(args.rounds):
            order = args.processes if round_index % 2 == 0 else args.processes[::-1]
            for processes in order:
                folder = workdir / f"r{round_index}-p{processes}"
                run = run_once(
                    folder,
                    processes,
                    args.threads,
                    args.upserts,
                    profile=args.profile,
                    env=env,
                    fresh=args.fresh,
                )
                runs.append(run)
                print(
                    f"round {round_index + 1}, {processes} worker process(es) x {args.threads} "
                    f"threads: {run.rate:,.0f} ops/s ({run.execution_rate:,.0f} executing); "
                    f"CPU: {run.cpu.line()}; the deployment used {run.stack_cores:.2f} cores, "
                    f"{run.stack_cpu_ms_per_operation:.2f} ms CPU/op; "
                    f"pg_subtrans lookups/op: {run.subtrans_per_operation:,.0f}"
                    + (f"; worker threads: {run.profile}" if run.profile else "")
                )
    finally:
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    figures = report(runs, args.processes)
    parameters: dict[str, Any] = vars(args) | {"database": "postgresql", "broker": "redis"}
    path = write_json("scale", figures, parameters)
    print(f"written to {path}")


def report(runs: list[Run], configurations: list[int]) -> list[Figure]:
    figures: list[Figure] = []
    best: dict[int, Run] = {}
    for processes in configurations:
        mine = [run for run in runs if run.processes == processes]
        best[processes] = max(mine, key=lambda run: run.rate)
    rows = [("worker processes", "ops/s", "executing ops/s", "cores used", "CPU ms/op",
             "CPU split (that run)")]  # fmt: skip
    for processes, run in best.items():
        rows.append(
            (f"{processes} x {run.threads} threads", f"{run.rate:,.0f}",
             f"{run.execution_rate:,.0f}", f"{run.stack_cores:.2f}",
             f"{run.stack_cpu_ms_per_operation:.2f}", run.cpu.line())
        )  # fmt: skip
        figures.append(
            Figure(
                f"scale: 100k upserts, {processes} worker process(es)",
                run.rate,
                "ops/s",
                note=run.cpu.line(),
                details={
                    "runs": [r.rate for r in runs if r.processes == processes],
                    "execution_rate": run.execution_rate,
                    "submit_seconds": run.submit_seconds,
                    "cpu_seconds": run.cpu.seconds,
                    "cpu_capacity": run.cpu.capacity,
                    "stack_cores": run.stack_cores,
                    "stack_cpu_ms_per_operation": run.stack_cpu_ms_per_operation,
                    "ceiling_ops_per_second": run.ceiling,
                    "subtrans_lookups_per_operation": run.subtrans_per_operation,
                    "profile": run.profile,
                },
            )
        )
    if len(best) >= 2:
        low, high = min(best), max(best)
        ratio = best[high].rate / best[low].rate
        verdict = "ok" if ratio >= RATIO_TARGET else "MISSED"
        target = f"target >= {RATIO_TARGET}x: {verdict}"
        rows.append((f"{high} vs {low}", f"{ratio:.2f}x", "", "", "", target))
        figures.append(Figure(f"scale: {high} vs {low} worker processes", ratio, "x", RATIO_TARGET))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    print(f"machine: {machine()}")
    return figures


if __name__ == "__main__":
    main()
