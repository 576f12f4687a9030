"""Batch webhook latency (issue 4): from a batch reaching `finished` to the receiver's POST.

A real `conveyor serve` and a real receiver on loopback. The start of each interval is the
moment the finishing transaction stamped the delivery row (`webhook_deliveries.created_ts`,
read from the server's database), the end is the receiver's clock when the POST arrived:
one machine, one clock. 50 small batches, one after another; the median is the figure.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
from pathlib import Path

import httpx
import orjson
from tests.conftest import LIST_BODY
from tests.e2e.server import ServerProcess, free_port
from tests.webhooks.receiver import running_receiver

from bench.report import Figure, print_table, write_json

TARGET_MS = 50.0


def measure(batches: int) -> list[Figure]:
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-bench-") as temp,
        ServerProcess(Path(temp), port=free_port()) as server,
        running_receiver() as receiver,
        httpx.Client(base_url=server.base_url, auth=("bench", server.key), timeout=30) as client,
    ):
        list_id = client.post("/3.0/lists", json=LIST_BODY).json()["id"]
        hook = client.post("/3.0/batch-webhooks", json={"url": receiver.url})
        hook.raise_for_status()
        database = sqlite3.connect(f"file:{server.data_dir / 'conveyor.db'}?mode=ro", uri=True)
        latencies_ms: list[float] = []
        for n in range(batches):
            operations = [
                {
                    "method": "POST",
                    "path": f"/lists/{list_id}/members",
                    "body": orjson.dumps(
                        {"email_address": f"hook{n}-{i}@example.org", "status": "subscribed"}
                    ).decode(),
                }
                for i in range(5)
            ]
            batch = client.post("/3.0/batches", json={"operations": operations}).json()
            [*_, post] = receiver.wait_for_posts(n + 1, timeout=30)
            finished_at = database.execute(
                "SELECT created_ts FROM webhook_deliveries WHERE batch_id = ?", (batch["id"],)
            ).fetchone()[0]
            latencies_ms.append((post.at - finished_at) * 1000)
        database.close()
    quantiles = statistics.quantiles(latencies_ms, n=100)
    return [
        Figure(
            "webhook: finished -> receiver POST (median)",
            statistics.median(latencies_ms),
            "ms",
            note=f"target <= {TARGET_MS:.0f} ms; p90 {quantiles[89]:.1f} ms, "
            f"max {max(latencies_ms):.1f} ms over {batches} batches",
            details={"latencies_ms": latencies_ms},
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=50)
    args = parser.parse_args()
    figures = measure(args.batches)
    print_table(figures)
    print(f"\nwritten to {write_json('webhooks', figures, vars(args))}")


if __name__ == "__main__":
    main()
