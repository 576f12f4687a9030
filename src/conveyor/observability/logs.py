"""Log lines an operator can follow: every line carries the request id, the account and the
batch id it happened under, as text for people or as JSON lines (`CONVEYOR_LOG_FORMAT`).

The ids travel in context variables: set by the HTTP edge for a request and by the engine
for a batch step, they reach every line logged under them, worker threads included
(anyio and Starlette copy the context into the threads they run). No line may carry an API
key or a secret: the server's secrets are masked wherever they appear, and so is anything
shaped like an API key (docs/security.md).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlsplit

from pythonjsonlogger.json import JsonFormatter

from conveyor.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"
# An API key: 32 hex characters, a dash, a datacenter (us1). Masked but for the datacenter.
_API_KEY = re.compile(r"\b[0-9a-f]{32}-([a-z]+[0-9]+)\b")
CONTEXT_FIELDS = ("request_id", "account", "batch_id", "step")


@dataclass(slots=True)
class RequestInfo:
    """The request being answered; the gate fills in the account once it knows it."""

    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    account: str | None = None
    batch_id: str | None = None


@dataclass(slots=True)
class StepInfo:
    """The batch step being run, and what its committed groups did."""

    batch_id: str
    step: str
    succeeded: int = 0
    failed: int = 0


_request: ContextVar[RequestInfo | None] = ContextVar("conveyor_request", default=None)
_step: ContextVar[StepInfo | None] = ContextVar("conveyor_step", default=None)


def current_request() -> RequestInfo | None:
    return _request.get()


def current_step() -> StepInfo | None:
    return _step.get()


def note_account(account: str, batch_id: str | None = None) -> None:
    """Who the current request acts for (and which batch it names), once authenticated."""
    request = _request.get()
    if request is not None:
        request.account = account
        request.batch_id = batch_id


def enter_request(info: RequestInfo) -> object:
    return _request.set(info)


def leave_request(token: object) -> None:
    _request.reset(token)  # type: ignore[arg-type]


def enter_step(info: StepInfo) -> object:
    return _step.set(info)


def leave_step(token: object) -> None:
    _step.reset(token)  # type: ignore[arg-type]


def context_fields() -> dict[str, str]:
    """The ids of what is running now, for a log line."""
    found: dict[str, str] = {}
    request, step = _request.get(), _step.get()
    if request is not None:
        found["request_id"] = request.request_id
        if request.account:
            found["account"] = request.account
        if request.batch_id:
            found["batch_id"] = request.batch_id
    if step is not None:
        found["batch_id"] = step.batch_id
        found["step"] = step.step
    return found


class ContextFilter(logging.Filter):
    """Adds the context's ids to every record, and masks secrets in its message."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        # Short values would mask ordinary words; every real secret is long.
        self.secrets = [secret for secret in secrets if len(secret) >= 8]

    def filter(self, record: logging.LogRecord) -> bool:
        attributes = record.__dict__
        for name, value in context_fields().items():
            attributes.setdefault(name, value)
        shown = " ".join(
            f"{name}={attributes[name]}" for name in CONTEXT_FIELDS if name in attributes
        )
        record.context = f" [{shown}]" if shown else ""
        message = record.getMessage()
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        if "-" in text:
            text = _API_KEY.sub(r"***-\1", text)
        return text


class MaskingJsonFormatter(JsonFormatter):
    """JSON lines; the exception text is masked as the message is."""

    def __init__(self, masker: ContextFilter) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            reserved_attrs=[*_RESERVED, "context"],
            json_ensure_ascii=False,
        )
        self.masker = masker

    def formatException(self, ei: Any) -> str:
        return self.masker.mask(str(super().formatException(ei)))


class MaskingTextFormatter(logging.Formatter):
    def __init__(self, masker: ContextFilter) -> None:
        super().__init__(TEXT_FORMAT)
        self.masker = masker

    def formatException(self, ei: Any) -> str:
        return self.masker.mask(super().formatException(ei))


_RESERVED = [
    "args", "asctime", "created", "exc_info", "exc_text", "filename", "funcName", "levelname",
    "levelno", "lineno", "module", "msecs", "message", "msg", "name", "pathname", "process",
    "processName", "relativeCreated", "stack_info", "thread", "threadName", "taskName",
]  # fmt: skip


def secrets_of(settings: Settings) -> list[str]:
    """Every secret the settings hold, to mask wherever one would appear."""
    found = [settings.secret, settings.admin_token, settings.metrics_token]
    found.append(settings.s3_secret_access_key)
    for url in (settings.database_url, settings.broker_url, settings.limiter_url):
        if url and "@" in url:
            with contextlib.suppress(ValueError):
                found.append(urlsplit(url).password)
    return [secret for secret in found if secret]


def log_handler(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing `settings.log_format` lines to `stream` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    install_format(handler, settings)
    return handler


def install_format(handler: logging.Handler, settings: Settings) -> None:
    masker = ContextFilter(secrets_of(settings))
    handler.addFilter(masker)
    if settings.log_format == "json":
        handler.setFormatter(MaskingJsonFormatter(masker))
    else:
        handler.setFormatter(MaskingTextFormatter(masker))


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> None:
    """The process's logging: the root logger at `settings.log_level`, one handler in the
    chosen format. Handlers already on the root (Dramatiq's worker command installs its
    own) get the format instead of a second handler."""
    # No line shows the caller, the thread or the process: not collecting them is the
    # logging HOWTO's own "Optimization" advice, and halves the cost of a request's line.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    level = "DEBUG" if settings.log_level == "trace" else settings.log_level.upper()
    root.setLevel(level)
    if root.handlers and stream is None:
        for handler in root.handlers:
            install_format(handler, settings)
        return
    root.addHandler(log_handler(settings, stream))
