"""One typed settings model, read from flags and `CONVEYOR_*` variables once, at the edge.

Every value is checked when it is read: a bad one stops the process with one line naming
the variable (`SettingsError`), never a traceback later. Secrets never appear in `repr`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "CONVEYOR_"
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
LogFormat = Literal["text", "json"]
Positive = Annotated[int, Field(gt=0)]
PositiveSeconds = Annotated[float, Field(gt=0)]


class SettingsError(ValueError):
    """Settings that cannot work, each problem a line naming its variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Section(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="forbid", case_sensitive=False)


class Limits(_Section):
    """Per-account request limits of the Marketing API (docs/compatibility.md: 10
    simultaneous connections, 120 s per request)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    max_concurrent_requests: Positive = 10
    # Live progress streams (GET /batches/{id}/events) open at once per account and API
    # process. They hold none of the request slots above: a dashboard watching for hours
    # would otherwise take one of the account's ten.
    max_event_streams: Positive = 10
    request_timeout_seconds: PositiveSeconds = 120.0
    max_body_bytes: Positive = 4 * 1024 * 1024


class BatchSettings(_Section):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX + "BATCH_")

    max_operations: Positive = 1_000_000
    max_body_bytes: Positive = 1024 * 1024 * 1024
    max_unstarted_batches: Positive = 500
    # One operation is one API call: its body is held to a request's limit, its path and
    # params to a URL's, its operation_id to a size a result can carry (docs/security.md).
    max_operation_body_bytes: Positive = 4 * 1024 * 1024
    max_operation_id_chars: Positive = 8_192
    max_operation_path_chars: Positive = 16_384
    # One result's answer (a GET page of large members can be far larger than its request).
    max_result_bytes: Positive = 8 * 1024 * 1024
    chunk_size: Positive = 2_500
    group_size: Positive = 500
    worker_threads: Positive = 2
    # SQLite: helper processes that answer groups of member operations on snapshots while
    # the server's process writes (docs/architecture.md decision 21). Unset: one fewer than
    # the machine's cores (the server's process keeps one); 0 turns them off. Groups smaller
    # than `prepare_min_operations` are not worth the trip.
    prepare_processes: Annotated[int, Field(ge=0)] | None = None
    prepare_min_operations: Positive = 100
    # A work step runs groups for at most this long, then re-queues behind other batches;
    # on SQLite a group sizes itself to hold the write lock about `group_hold_seconds`
    # (fairness, docs/architecture.md decision 20; on PostgreSQL nobody waits for a group).
    work_slice_seconds: PositiveSeconds = 0.1
    group_hold_seconds: PositiveSeconds = 0.05
    results_per_file: Positive = 10_000
    retention_seconds: Positive = 7 * 24 * 3600
    url_ttl_seconds: Positive = 600
    lease_seconds: PositiveSeconds = 60
    page_size: Positive = 1_000
    ingest_page_size: Positive = 5_000
    stale_ingest_seconds: PositiveSeconds = 900
    sweep_interval_seconds: PositiveSeconds = 5.0
    sweep_idle_seconds: PositiveSeconds = 30.0
    webhook_threads: Positive = 8
    webhook_max_attempts: Positive = 8
    webhook_first_retry_seconds: Annotated[float, Field(ge=0)] = 36.0
    webhook_timeout_seconds: PositiveSeconds = 10.0
    # A delivery's claim lasts its request's deadline plus this: time to record the attempt.
    webhook_lease_margin_seconds: PositiveSeconds = 30.0
    # Deliveries of one account in flight at once, across every worker process.
    webhook_account_concurrency: Positive = 2
    webhook_allow_loopback: bool = True
    webhook_allow_private: bool = True
    max_webhooks: Positive = 20
    max_pending_webhooks: Positive = 500

    @field_validator("group_size", mode="after")
    @classmethod
    def _groups_fit_in_chunks(cls, value: int, info: ValidationInfo) -> int:
        chunk_size = info.data.get("chunk_size")
        if chunk_size is not None and value > chunk_size:
            raise ValueError(f"a group ({value}) must not exceed a chunk ({chunk_size})")
        return value


_SCHEMES = {
    "database_url": ("sqlite", "postgres", "postgresql", "postgresql+psycopg"),
    "broker_url": ("redis", "rediss", "unix", "amqp", "amqps"),
    "blob_url": ("file", "s3"),
    "public_url": ("http", "https"),
    "s3_endpoint": ("http", "https"),
}


class Settings(_Section):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    data_dir: Path = Path("./data")
    database_url: str | None = None
    secret: str | None = Field(default=None, repr=False)
    public_url: str | None = None
    log_level: LogLevel = "info"
    # Scaled out: a Dramatiq broker (redis:// or amqp://); absent = in-process.
    broker_url: str | None = None
    # file:///a/shared/folder or s3://bucket/prefix; absent = <data-dir>/blobs.
    blob_url: str | None = None
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = Field(default=None, repr=False)
    # Where the per-account connection limit is counted across API processes: a redis://
    # URL, "database" (PostgreSQL), or absent = this process only.
    limiter_url: str | None = None
    # `conveyor emulate`: any well-formed key gets its own account on first use, and the test
    # controls under /_conveyor/ are served without a token (docs/emulator.md).
    emulate: bool = False
    # On a normal server, serves the test controls to requests that carry this token.
    admin_token: str | None = Field(default=None, repr=False)
    # Log lines as text for people or JSON for a log pipeline (docs/observability.md).
    log_format: LogFormat = "text"
    # GET /metrics in Prometheus' text format; off, it answers 404. With a token, only to
    # `Authorization: Bearer <token>`.
    metrics_enabled: bool = True
    metrics_token: str | None = Field(default=None, repr=False)
    # The web dashboard at /dashboard (docs/dashboard.md); off, its pages answer 404. A
    # session lasts this long after sign-in (revoking the key ends it at once).
    dashboard_enabled: bool = True
    dashboard_session_seconds: Annotated[int, Field(ge=60, le=30 * 86_400)] = 12 * 3600
    limits: Limits = Field(default_factory=Limits)
    batches: BatchSettings = Field(default_factory=BatchSettings)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower_case_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator(*_SCHEMES, mode="after")
    @classmethod
    def _known_scheme(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        allowed = _SCHEMES[str(info.field_name)]
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in allowed:
            raise ValueError("expected a URL of " + ", ".join(f"{s}://" for s in allowed))
        return value

    @field_validator("limiter_url", mode="after")
    @classmethod
    def _known_limiter(cls, value: str | None) -> str | None:
        if value is None or value == "database" or value.startswith(("redis://", "rediss://")):
            return value
        raise ValueError("expected a redis:// URL or 'database'")

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if isinstance(value, str) and name and name.endswith("_url"):
                value = mask_password(value)
            yield name, value

    @property
    def test_controls(self) -> bool:
        """Whether /_conveyor/ (and the request journal and faults behind it) is on."""
        return self.emulate or bool(self.admin_token)

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
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from `CONVEYOR_*` variables; explicit overrides (flags) win.

        Raises `SettingsError` with one line per bad value, naming its variable.
        """
        given = {name: value for name, value in overrides.items() if value is not None}
        # Only `conveyor emulate` turns emulate mode on: a stray CONVEYOR_EMULATE must never
        # make a real server take any key.
        given.setdefault("emulate", False)
        problems: list[str] = []
        sections: tuple[tuple[str, type[_Section], str], ...] = (
            ("limits", Limits, ""),
            ("batches", BatchSettings, "BATCH_"),
        )
        for name, section, prefix in sections:
            if name not in given:
                try:
                    given[name] = section()
                except ValidationError as exc:
                    problems += _problems(exc, prefix)
                    given[name] = section.model_construct()  # so the rest is checked too
        try:
            settings = cls(**given)
        except ValidationError as exc:
            problems += _problems(exc, "")
        if problems:
            raise SettingsError(problems)
        return settings


def mask_password(url: str) -> str:
    """The URL with its password replaced by `***`, for logs and `repr`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _problems(exc: ValidationError, prefix: str) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        fields = [str(part) for part in error["loc"] if not isinstance(part, int)]
        name = "_".join(fields).upper() if fields else "*"
        given = error.get("input")
        shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
        lines.append(f"{ENV_PREFIX}{prefix}{name}: {_message(error)}{shown}")
    return lines


def _message(error: Any) -> str:
    message = str(error["msg"])
    return message.removeprefix("Value error, ")
