"""Batch body parser throughput: the parser on ijson's C builder against the one it replaced.

A generated body of 1,000,000 operations (member upserts shaped like those of bench.batches
c., a JSON-encoded string body each) is parsed from a file, in one fresh process per run so
that each peak RSS is its own:

- items:      ijson's C `items(file, "operations.item")`, counting the items: the ceiling
              (no top-level check, no validation);
- new:        `iter_operations` (conveyor.domain.operations);
- new async:  `aiter_operations` over 64 KiB chunks, as the server feeds it;
- old:        the event-by-event parser it replaced (tests/unit/reference_operations_parser).

The variants take turns, round after round (the machine is shared and noisy): each figure is
the median of its rounds, and the ratios are taken round by round.

python -m bench.ingest [--count 1000000] [--rounds 3] [--body FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

import ijson
import orjson
import psutil

from bench.report import Figure, write_json

VARIANTS = ("items", "new", "new async", "old")
PARSER_TARGET = 150_000  # operations/s: well above what a 100k ops/s ingest needs
CHUNK = 64 * 1024


def write_body(path: Path, count: int) -> int:
    """The body bench.batches c. streams: PUT upserts with merge fields, a string body each."""
    with path.open("wb") as out:
        out.write(b'{"operations":[')
        for i in range(count):
            if i:
                out.write(b",")
            email = f"m{i}@example.org"
            member = hashlib.md5(email.encode()).hexdigest()
            body = {
                "email_address": email,
                "status_if_new": "subscribed",
                "merge_fields": {"FNAME": "Ann", "LNAME": "Example"},
            }
            operation = {
                "method": "PUT",
                "path": f"/lists/0123456789/members/{member}",
                "operation_id": f"m-{i}",
                "body": orjson.dumps(body).decode(),
            }
            out.write(orjson.dumps(operation))
        out.write(b"]}")
    return path.stat().st_size


# --- one run, in its own process --------------------------------------------------------------


def _count_items(fileobj: BinaryIO, max_operations: int) -> int:
    return sum(1 for _ in ijson.items(fileobj, "operations.item", use_float=True))


def _count_new(fileobj: BinaryIO, max_operations: int) -> int:
    from conveyor.domain.operations import iter_operations

    return sum(1 for _ in iter_operations(fileobj, max_operations=max_operations))


def _count_new_async(fileobj: BinaryIO, max_operations: int) -> int:
    from conveyor.domain.operations import aiter_operations

    async def chunks() -> AsyncIterator[bytes]:
        while data := fileobj.read(CHUNK):
            yield data

    async def count() -> int:
        seen = 0
        async for _ in aiter_operations(chunks(), max_operations=max_operations):
            seen += 1
        return seen

    return asyncio.run(count())


def _count_old(fileobj: BinaryIO, max_operations: int) -> int:
    from tests.unit.reference_operations_parser import iter_operations

    return sum(1 for _ in iter_operations(fileobj, max_operations=max_operations))


COUNTERS: dict[str, Callable[[BinaryIO, int], int]] = {
    "items": _count_items,
    "new": _count_new,
    "new async": _count_new_async,
    "old": _count_old,
}


def child(variant: str, body: Path, count: int) -> None:
    counter = COUNTERS[variant]
    with body.open("rb") as fileobj:
        # Imports done and the file open: what the parse adds is measured from here.
        rss_before = psutil.Process().memory_info().rss
        wall, cpu = time.perf_counter(), time.process_time()
        operations = counter(fileobj, count)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    result = {"operations": operations, "wall": wall, "cpu": cpu}
    print(orjson.dumps({**result, "rss_before": rss_before, "peak_rss": peak}).decode())


# --- the rounds ---------------------------------------------------------------------------------


def run_one(variant: str, body: Path, count: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.ingest", "--child", variant, "--body", str(body)]
    done = subprocess.run(
        [*command, "--count", str(count)], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    if result["operations"] != count:
        raise RuntimeError(f"{variant} parsed {result['operations']} of {count} operations")
    return result


def measure(body: Path, count: int, rounds: int) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for round_number in range(rounds):
        # Each round starts with a different variant, so none always runs first or last.
        order = VARIANTS[round_number % len(VARIANTS) :] + VARIANTS[: round_number % len(VARIANTS)]
        for variant in order:
            result = run_one(variant, body, count)
            runs[variant].append(result)
            print(
                f"  round {round_number + 1} {variant:10s} {count / result['wall']:>10,.0f} ops/s"
                f"  cpu {count / result['cpu']:>10,.0f} ops/s"
                f"  peak RSS {result['peak_rss'] / 2**20:6.1f} MiB",
                flush=True,
            )
    return runs


def report(runs: dict[str, list[dict[str, Any]]], count: int, size: int) -> list[Figure]:
    def median(variant: str, key: str) -> float:
        return float(statistics.median(run[key] for run in runs[variant]))

    def ratio(a: str, b: str, key: str) -> float:
        # Round by round: the rate ratio a/b is the time ratio b/a.
        pairs = zip(runs[a], runs[b], strict=True)
        return float(statistics.median(rb[key] / ra[key] for ra, rb in pairs))

    figures = []
    print(f"\nbody: {count:,} operations, {size / 2**20:,.0f} MiB; medians of {len(runs['new'])}")
    header = ("parser", "ops/s (wall)", "ops/s (cpu)", "MiB/s", "peak RSS", "RSS added")
    rows = [header]
    for variant in VARIANTS:
        wall, cpu = median(variant, "wall"), median(variant, "cpu")
        peak, before = median(variant, "peak_rss"), median(variant, "rss_before")
        rows.append(
            (
                variant,
                f"{count / wall:,.0f}",
                f"{count / cpu:,.0f}",
                f"{size / wall / 2**20:,.1f}",
                f"{peak / 2**20:,.1f} MiB",
                f"{(peak - before) / 2**20:,.1f} MiB",
            )
        )
        figures.append(
            Figure(
                name=f"parser: {variant}",
                rate=count / wall,
                unit="ops/s",
                target=PARSER_TARGET if variant == "new" else None,
                details={
                    "cpu_ops_per_s": count / cpu,
                    "peak_rss_bytes": peak,
                    "rss_before_bytes": before,
                    "runs": runs[variant],
                },
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        cells = [cell.rjust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join([row[0].ljust(widths[0]), *cells[1:]]))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    print()
    for a, b in (("new", "old"), ("new", "items"), ("new async", "new")):
        print(
            f"{a} / {b}: {ratio(a, b, 'wall'):.2f}x wall, {ratio(a, b, 'cpu'):.2f}x cpu"
            " (median of per-round ratios)"
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="operations in the body")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each parser")
    parser.add_argument("--body", type=Path, help="a body written before (else a new one)")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.body, args.count)
        return
    with tempfile.TemporaryDirectory(prefix="conveyor-ingest-") as folder:
        body = args.body or Path(folder) / "body.json"
        if args.body is None:
            started = time.perf_counter()
            write_body(body, args.count)
            print(f"wrote {body} in {time.perf_counter() - started:.1f} s", flush=True)
        size = body.stat().st_size
        runs = measure(body, args.count, args.rounds)
        figures = report(runs, args.count, size)
    parameters = {"count": args.count, "rounds": args.rounds, "body_bytes": size}
    print("\nwritten:", write_json("ingest", figures, parameters))


if __name__ == "__main__":
    main()
