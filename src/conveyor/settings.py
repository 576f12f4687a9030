"""One typed settings object, read from flags and the environment once, at the edge."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ENV_PREFIX = "CONVEYOR_"


@dataclass(frozen=True)
class Limits:
    """Per-account request limits of the Marketing API (FACTS.md: 10 connections, 120 s)."""

    max_concurrent_requests: int = 10
    request_timeout_seconds: float = 120.0
    max_body_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class BatchSettings:
    max_operations: int = 1_000_000
    max_body_bytes: int = 1024 * 1024 * 1024
    max_unstarted_batches: int = 500
    chunk_size: int = 2_500
    group_size: int = 500
    worker_threads: int = 2
    results_per_file: int = 10_000
    retention_seconds: int = 7 * 24 * 3600
    url_ttl_seconds: int = 600
    lease_seconds: int = 60
    page_size: int = 1_000
    ingest_page_size: int = 5_000
    stale_ingest_seconds: int = 900
    sweep_interval_seconds: float = 5.0
    sweep_idle_seconds: float = 30.0
    webhook_threads: int = 8
    webhook_max_attempts: int = 8
    webhook_first_retry_seconds: float = 36.0
    webhook_timeout_seconds: float = 10.0
    webhook_allow_loopback: bool = True
    webhook_allow_private: bool = True
    max_webhooks: int = 20
    max_pending_webhooks: int = 500


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("./data")
    database_url: str | None = None
    secret: str | None = None
    public_url: str | None = None
    log_level: str = "info"
    # Scaled out: a Dramatiq broker (redis:// or amqp://); absent = in-process.
    broker_url: str | None = None
    # file:///shared/path or s3://bucket/prefix; absent = <data-dir>/blobs.
    blob_url: str | None = None
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    # Where the per-account connection limit is counted across API processes: a redis://
    # URL, "database" (PostgreSQL), or absent = this process only.
    limiter_url: str | None = None
    limits: Limits = field(default_factory=Limits)
    batches: BatchSettings = field(default_factory=BatchSettings)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'conveyor.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def s3_options(self) -> dict[str, str]:
        options = {"region": self.s3_region}
        if self.s3_endpoint:
            options["endpoint"] = self.s3_endpoint
            options["allow_http"] = "true" if self.s3_endpoint.startswith("http:") else "false"
        if self.s3_access_key_id:
            options["access_key_id"] = self.s3_access_key_id
        if self.s3_secret_access_key:
            options["secret_access_key"] = self.s3_secret_access_key
        return options

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `CONVEYOR_*` variables; explicit overrides (flags) win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in ("limits", "batches"):
                continue
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.type, raw)
        limits = _section(Limits, env, "")
        batches = _section(BatchSettings, env, "BATCH_")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"])
        return cls(limits=limits, batches=batches, **values)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _section(cls: type[T], env: Mapping[str, str], prefix: str) -> T:
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        raw = env.get(ENV_PREFIX + prefix + f.name.upper())
        if raw:
            values[f.name] = _coerce(f.type, raw)
    return cls(**values)


def _coerce(type_name: object, raw: str) -> Any:
    text = str(type_name)
    if text.startswith("bool"):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if text.startswith("int"):
        return int(raw)
    if text.startswith("float"):
        return float(raw)
    if text.startswith("Path"):
        return Path(raw)
    return raw
