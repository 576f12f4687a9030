"""Read an archive through `Client.results()` in a fresh process and report its peak RSS.

python -m tests.client.rss_probe ARCHIVE   → one JSON line on stdout
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from conveyor.client import Client
from tests.client.support import BATCH_ID, Stub, serving


def peak_rss_mib() -> float:
    # VmHWM is this process image's own peak. ru_maxrss is not: Linux carries it over from the
    # parent across fork and exec, so it would report pytest's peak, not the reader's.
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    archive = Path(sys.argv[1])
    results = failed = empty = null_ids = web_ids = 0
    with serving(Stub(archive)) as stub, Client("0" * 32 + "-us1", base_url=stub.base_url) as api:
        baseline = peak_rss_mib()
        started = time.monotonic()
        with api.results(BATCH_ID) as stream:
            for result in stream:
                results += 1
                failed += not result.ok
                empty += result.body is None
                null_ids += result.operation_id is None
                if isinstance(result.body, dict) and "web_id" in result.body:
                    web_ids += 1
        seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "results": results,
                "failed": failed,
                "empty_bodies": empty,
                "null_ids": null_ids,
                "web_ids": web_ids,
                "seconds": seconds,
                "baseline_rss_mib": baseline,
                "peak_rss_mib": peak_rss_mib(),
            }
        )
    )


if __name__ == "__main__":
    main()
