"""Conveyor's Prometheus metrics, one registry per `Services` (tests build many apps).

In a process started by `conveyor worker`, `PROMETHEUS_MULTIPROC_DIR` is set before anything
imports prometheus_client, so the counters below are written to that shared folder and the
worker's exporter (Dramatiq's, `--prometheus-port`) serves the sum over its processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from conveyor.domain.states import BatchStatus

# Requests are mostly milliseconds; a batch submit of 1M operations takes a minute.
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
)  # fmt: skip


class ConveyorMetrics:
    """The counters and histogram every part records into, and the scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.http_requests = Counter(
            "conveyor_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "conveyor_http_request_duration_seconds",
            "Time to answer an HTTP request (to its last byte), by route template.",
            ["route"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.batch_operations = Counter(
            "conveyor_batch_operations",
            "Batch operations run and committed, by outcome (2xx succeeded, else failed).",
            ["outcome"],
            registry=registry,
        )
        self.webhook_deliveries = Counter(
            "conveyor_webhook_deliveries",
            "Runs of the webhook delivery step, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        # Pre-created, so a scrape shows zeros before the first batch instead of nothing.
        self.operations_succeeded = self.batch_operations.labels("succeeded")
        self.operations_failed = self.batch_operations.labels("failed")

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # `labels()` costs ~4 µs a call here (it builds and checks the key under a lock):
        # the children are kept by key instead (labels are bounded, so is this).
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.http_requests.labels(method, route, str(status)),
                self.http_duration.labels(route),
            )
        count, duration = children
        count.inc()
        duration.observe(seconds)

    def count_operations(self, succeeded: int, failed: int) -> None:
        if succeeded:
            self.operations_succeeded.inc(succeeded)
        if failed:
            self.operations_failed.inc(failed)

    def count_delivery(self, outcome: str) -> None:
        self.webhook_deliveries.labels(outcome).inc()

    def watch_batches(self, read: Callable[[], dict[BatchStatus, int]]) -> None:
        """Add the `conveyor_batches` gauge, read by `read` (from the database) at scrape."""
        self.registry.register(BatchGauge(read))

    def scrape(self) -> bytes:
        """The exposition text; blocks on the database read of the gauge."""
        return generate_latest(self.registry)


class BatchGauge(Collector):
    def __init__(self, read: Callable[[], dict[BatchStatus, int]]) -> None:
        self.read = read

    def describe(self) -> list[GaugeMetricFamily]:
        # Declared without reading: registering must not touch the database.
        return [GaugeMetricFamily("conveyor_batches", "Batches by status.", labels=["status"])]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("conveyor_batches", "Batches by status.", labels=["status"])
        for status, count in self.read().items():
            gauge.add_metric([status.value], count)
        yield gauge
