"""Figures, the printed table and the JSON file under bench/results/."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    """One measured rate, with the target it is held to (None: a floor, no target)."""

    name: str
    rate: float
    unit: str
    target: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.rate >= self.target


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
    }


def git_revision() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "-s"))}


def print_table(figures: list[Figure]) -> None:
    rows = [("benchmark", "result", "target", "", "latency p50 / p99", "note")]
    for fig in figures:
        target = "-" if fig.target is None else f">= {fig.target:,.0f}"
        latency = ""
        if fig.latency_ms:
            latency = f"{fig.latency_ms['p50']:.1f} / {fig.latency_ms['p99']:.1f} ms"
        verdict = {True: "ok", False: "MISSED", None: ""}[fig.met]
        # Seconds and other small figures keep their decimals (0.4 s is not "0 s").
        shown = (
            f"{fig.rate:,.3f}"
            if abs(fig.rate) < 10 and fig.rate != int(fig.rate)
            else (f"{fig.rate:,.0f}")
        )
        rows.append((fig.name, f"{shown} {fig.unit}", target, verdict, latency, fig.note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def write_json(name: str, figures: list[Figure], parameters: dict[str, Any]) -> Path:
    started = datetime.now(UTC)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{started:%Y%m%dT%H%M%SZ}.json"
    document = {
        "benchmark": name,
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "git": git_revision(),
        "parameters": parameters,
        "figures": [{**asdict(fig), "met": fig.met} for fig in figures],
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return path
