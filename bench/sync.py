"""`conveyor members sync` end to end: rows/s and the sync process's peak RSS (issue 14).

python -m bench.sync                 # 1,000,000 contacts from SQLite (about 10 minutes)
python -m bench.sync --rows 50000    # a quick run

Side by side in one run, each against a fresh list of the same `conveyor serve`:

- sync: `conveyor members sync` from a SQLite table (email, FNAME, LNAME, updated_at) with
  --since-column, a state file and a write-back of web_id, member_id, status_code and error
  into the same table: read → batches of --chunk-size upserts → wait → results → write-back.
- plain: the same upserts prepared beforehand as a .jsonl file and sent with
  `conveyor batch submit --wait` (one batch, no database, no results read): the floor the
  sync's overhead is measured against.

Peak RSS is each client process's VmHWM (the server's memory is not counted); the server's
own time is the sum of its batches' submitted_at → completed_at.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
from tests.conftest import LIST_BODY
from tests.e2e.server import ServerProcess, child_env, conveyor_command

from bench.report import Figure, print_table, write_json
from conveyor.client import Client
from conveyor.client import operations as ops


def make_source(path: Path, rows: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, FNAME TEXT, LNAME TEXT,"
        " updated_at TEXT, web_id INTEGER, member_id TEXT, sync_status INTEGER, sync_error TEXT)"
    )
    base = dt.datetime(2024, 1, 1)
    batch = []
    for row in range(1, rows + 1):
        stamp = (base + dt.timedelta(seconds=row)).isoformat(sep=" ")
        batch.append((row, f"contact{row}@example.org", f"First{row}", f"Last{row}", stamp))
        if len(batch) == 50_000:
            conn.executemany("INSERT INTO contacts (id, email, FNAME, LNAME, updated_at)"
                             " VALUES (?, ?, ?, ?, ?)", batch)  # fmt: skip
            batch.clear()
    conn.executemany("INSERT INTO contacts (id, email, FNAME, LNAME, updated_at)"
                     " VALUES (?, ?, ?, ?, ?)", batch)  # fmt: skip
    conn.execute("CREATE INDEX contacts_since ON contacts (updated_at, id)")
    conn.commit()
    conn.close()


def write_plain_operations(path: Path, list_id: str, rows: int) -> None:
    with path.open("wb") as out:
        for row in range(1, rows + 1):
            operation = ops.upsert_member(
                list_id,
                f"contact{row}@example.org",
                merge_fields={"FNAME": f"First{row}", "LNAME": f"Last{row}"},
                operation_id=str(row),
            )
            out.write(orjson.dumps(operation) + b"\n")


def vm_hwm_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def run_measured(args: Sequence[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Seconds, peak RSS (MiB) and stderr of one `conveyor` command."""
    with tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(
            conveyor_command(*args), env=child_env(env), stdout=subprocess.DEVNULL, stderr=err
        )
        peak = 0.0
        while process.poll() is None:
            # VmHWM only grows: the last reading before the exit is the process's peak.
            peak = max(peak, vm_hwm_mib(process.pid) or 0.0)
            time.sleep(0.05)
        seconds = time.monotonic() - started
        err.seek(0)
        text = err.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[:2])} exited with {process.returncode}:\n{text[-3000:]}"
        )
    return seconds, peak, text


def server_seconds(client: Client, batch_ids: set[str]) -> float:
    total = 0.0
    for batch in client.iter_batches():
        if batch.id in batch_ids and batch.completed_at:
            start = dt.datetime.fromisoformat(batch.submitted_at)
            total += (dt.datetime.fromisoformat(batch.completed_at) - start).total_seconds()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    args = parser.parse_args()
    rows = args.rows
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as folder:
        work = Path(folder)
        source = work / "crm.db"
        started = time.monotonic()
        make_source(source, rows)
        print(f"source: {rows:,} contacts in {time.monotonic() - started:.1f} s", flush=True)
        with ServerProcess(work / "server") as server:
            client = Client(server.key, base_url=server.base_url, timeout=600)
            env = {"CONVEYOR_URL": server.base_url, "MAILCHIMP_API_KEY": server.key}

            plain_list = str(client.request("POST", "lists", json=LIST_BODY)["id"])
            plain_file = work / "ops.jsonl"
            write_plain_operations(plain_file, plain_list, rows)
            before = {batch.id for batch in client.iter_batches()}
            plain_seconds, plain_peak, _ = run_measured(
                ["batch", "submit", str(plain_file), "--wait", "--timeout", "7200"], env
            )
            plain_batches = {batch.id for batch in client.iter_batches()} - before
            plain_server = server_seconds(client, plain_batches)
            print(f"plain: {plain_seconds:.1f} s, peak {plain_peak:.0f} MiB", flush=True)

            sync_list = str(client.request("POST", "lists", json=LIST_BODY)["id"])
            before = {batch.id for batch in client.iter_batches()}
            sync_seconds, sync_peak, text = run_measured(
                [
                    "members", "sync",
                    "--from", f"sqlite:///{source}",
                    "--query", "SELECT id, email, FNAME, LNAME, updated_at FROM contacts",
                    "--list", sync_list,
                    "--since-column", "updated_at",
                    "--state", str(work / "sync.json"),
                    "--chunk-size", str(args.chunk_size),
                    "--write-back",
                    "UPDATE contacts SET web_id = :web_id, member_id = :member_id,"
                    " sync_status = :status_code, sync_error = :error WHERE id = :id",
                    "--timeout", "7200",
                ],
                env,
            )  # fmt: skip
            sync_batches = {batch.id for batch in client.iter_batches()} - before
            sync_server = server_seconds(client, sync_batches)
            print(text.strip().splitlines()[-1], flush=True)
            conn = sqlite3.connect(source)
            written = conn.execute("SELECT count(web_id) FROM contacts").fetchone()[0]
            conn.close()
            if written != rows:
                raise RuntimeError(f"only {written} of {rows} web_ids were written back")
            client.close()

    figures = [
        Figure(
            "sync: rows/s end to end (read → upsert → web_id written back)",
            rows / sync_seconds,
            "rows/s",
            note=f"{sync_seconds:.1f} s; server busy {sync_server:.1f} s in "
            f"{len(sync_batches)} batches; {rows / sync_seconds / (rows / plain_seconds):.2f}x "
            "the plain rate",
            details={"seconds": sync_seconds, "server_seconds": sync_server},
        ),
        Figure(
            "plain: the same upserts as one prepared batch (batch submit --wait)",
            rows / plain_seconds,
            "rows/s",
            note=f"{plain_seconds:.1f} s; server busy {plain_server:.1f} s",
            details={"seconds": plain_seconds, "server_seconds": plain_server},
        ),
        Figure(
            "sync: peak RSS of the sync process",
            sync_peak,
            "MiB",
            note=f"plain batch submit: {plain_peak:.0f} MiB",
        ),
    ]
    print_table(figures)
    path = write_json("sync", figures, {"rows": rows, "chunk_size": args.chunk_size})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
