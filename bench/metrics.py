"""What /metrics costs: request throughput of `conveyor serve` with metrics on and off.

Two real servers, identical but for `CONVEYOR_METRICS_ENABLED`, measured with wrk in
alternating rounds (on, off, on, off, ...) so that the machine's noise falls on both alike;
during the "on" rounds a scraper reads /metrics every second (Prometheus' default is every
15 s: this is the pessimistic case). Figures: the median req/s of each side, their ratio
(target: metrics cost under 1%), and the server CPU per request.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from tests.e2e.server import ServerProcess

from bench.over_http import Load, WrkRun, basic_auth, measure_one
from bench.report import Figure, print_table, write_json
from conveyor.observability.metrics import ConveyorMetrics

MAX_COST = 0.01


def _scraping(url: str, stop: threading.Event) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.wait(1.0):
            client.get(url).raise_for_status()


def _recording_cost_us(count: int = 200_000) -> float:
    """What the middleware adds per request: the counter and histogram updates, timed alone."""
    metrics = ConveyorMetrics()
    route = "/3.0/lists/{list_id}/members/{subscriber_hash}"
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(count):
            metrics.observe_request("GET", route, 200, 0.0042)
        best = min(best, (time.perf_counter() - started) / count * 1e6)
    return best


def measure(load: Load, rounds: int) -> list[Figure]:
    runs: dict[str, list[WrkRun]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-metrics-") as folder:
        workdir = Path(folder)
        on = ServerProcess(workdir / "on", env={"CONVEYOR_METRICS_ENABLED": "true"})
        off = ServerProcess(workdir / "off", env={"CONVEYOR_METRICS_ENABLED": "false"})
        with on, off:
            for index in range(rounds):
                for side, server in (("on", on), ("off", off))[:: 1 if index % 2 else -1]:
                    stop = threading.Event()
                    scraper = None
                    if side == "on":
                        scraper = threading.Thread(
                            target=_scraping, args=(f"{server.base_url}/metrics", stop)
                        )
                        scraper.start()
                    try:
                        runs[side].append(
                            measure_one(
                                f"{server.api_url}/ping",
                                "get",
                                basic_auth(server.key),
                                load,
                                f"{side}{index}",
                                server.pid,
                            )
                        )
                    finally:
                        stop.set()
                        if scraper is not None:
                            scraper.join()
            scraped = httpx.get(f"{on.base_url}/metrics").text
            assert "conveyor_http_requests_total" in scraped
    rate = {side: statistics.median(r.ok_per_second for r in runs[side]) for side in runs}
    cpu = {
        side: statistics.median(r.server_cpu_seconds / max(r.requests, 1) * 1e6 for r in runs[side])
        for side in runs
    }
    recording_us = _recording_cost_us()
    cost = 1 - rate["on"] / rate["off"]
    cpu_cost = cpu["on"] / cpu["off"] - 1
    details = {
        "rounds": rounds,
        "req_per_s_on": [r.ok_per_second for r in runs["on"]],
        "req_per_s_off": [r.ok_per_second for r in runs["off"]],
    }
    return [
        Figure("GET /3.0/ping, metrics on (scraped every 1 s)", rate["on"], "req/s", None,
               note=f"server CPU {cpu['on']:.0f} us/req", details=details),
        Figure("GET /3.0/ping, metrics off", rate["off"], "req/s", None,
               note=f"server CPU {cpu['off']:.0f} us/req"),
        Figure("throughput cost of metrics (1 - on/off)", cost * 100, "%", None,
               note=f"target < {MAX_COST:.0%}; CPU per request {cpu_cost:+.1%}"),
        Figure("recording one request (counter + histogram)", recording_us, "us", None,
               note=f"{recording_us / cpu['off']:.2%} of the server CPU of a request"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one round")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=6, help="rounds per side")
    args = parser.parse_args()
    load = Load(args.connections, args.threads, args.seconds, args.warmup)
    figures = measure(load, args.rounds)
    print_table(figures)
    print("\nwritten:", write_json("metrics", figures, vars(args)))


if __name__ == "__main__":
    main()
