"""What the client returns: batches, batch results and batch webhooks as typed values."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from conveyor.client.errors import FieldError, problem_text
from conveyor.domain.archive import ResultRecord

FINISHED = "finished"


def _int(value: object) -> int:
    # The real service sends numbers; a proxy or a webhook echo may hand them over as strings.
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return 0


@dataclass(frozen=True, slots=True)
class Batch:
    id: str
    status: str
    total_operations: int
    finished_operations: int
    errored_operations: int
    submitted_at: str
    completed_at: str
    response_body_url: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    # True when a submit was answered with the batch an earlier submit of the same
    # Idempotency-Key made (the server's Idempotent-Replayed header).
    replayed: bool = field(default=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Batch:
        return cls(
            id=str(data.get("id", "")),
            status=str(data.get("status", "")),
            total_operations=_int(data.get("total_operations")),
            finished_operations=_int(data.get("finished_operations")),
            errored_operations=_int(data.get("errored_operations")),
            submitted_at=str(data.get("submitted_at") or ""),
            completed_at=str(data.get("completed_at") or ""),
            response_body_url=str(data.get("response_body_url") or ""),
            raw=dict(data),
        )

    @property
    def done(self) -> bool:
        """Mailchimp has no failed state: ``finished`` is the only end."""
        return self.status == FINISHED

    @property
    def succeeded_operations(self) -> int:
        return max(self.finished_operations - self.errored_operations, 0)


@dataclass(frozen=True, slots=True)
class BatchList:
    batches: list[Batch]
    total_items: int


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One operation's outcome, with its ``response`` string already decoded.

    ``body`` is the decoded JSON (``None`` for an empty body, as a 204 has); ``response`` keeps
    the text as the archive held it, for callers that want to store it untouched.
    """

    operation_id: str | None
    status_code: int
    body: Any
    response: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code <= 299

    @property
    def title(self) -> str:
        return self._problem_text("title")

    @property
    def detail(self) -> str:
        return self._problem_text("detail")

    @property
    def field_errors(self) -> list[FieldError]:
        if not isinstance(self.body, dict):
            return []
        errors = self.body.get("errors")
        if not isinstance(errors, list):
            return []
        return [
            FieldError(str(item.get("field", "")), str(item.get("message", "")))
            for item in errors
            if isinstance(item, dict)
        ]

    @property
    def error(self) -> str:
        """``""`` for a success; otherwise ``Title: detail`` and any field errors, one line."""
        if self.ok:
            return ""
        title, detail = self.title, self.detail
        if not title and not detail:
            # Not a problem document: show what there is rather than nothing.
            shown = f": {self.response[:200]}" if self.response else ""
            return f"HTTP {self.status_code}{shown}"
        return problem_text(title, detail, self.field_errors)

    def _problem_text(self, key: str) -> str:
        if isinstance(self.body, dict):
            value = self.body.get(key)
            if isinstance(value, str):
                return value
        return ""

    @classmethod
    def from_record(cls, record: ResultRecord) -> BatchResult:
        return cls(
            operation_id=record.operation_id,
            status_code=record.status_code,
            body=decode_response(record.response),
            response=record.response,
        )


def decode_response(text: str) -> Any:
    """The second parse every batch user writes: the ``response`` string into JSON."""
    if not text or text.isspace():
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        # orjson refuses integers beyond 64 bits, which are valid JSON; the stdlib does not.
        return json.loads(text)
    except ValueError:
        # A body that is not JSON (a proxy's HTML error) is still worth showing, as text.
        return text


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    url: str
    enabled: bool
    # Returned once, on creation, by servers that sign deliveries; None everywhere else.
    secret: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Webhook:
        secret = data.get("secret")
        return cls(
            id=str(data.get("id", "")),
            url=str(data.get("url", "")),
            enabled=bool(data.get("enabled", True)),
            secret=secret if isinstance(secret, str) and secret else None,
            raw=dict(data),
        )


@dataclass(frozen=True, slots=True)
class WebhookList:
    webhooks: list[Webhook]
    total_items: int


# --- Conveyor's batch extensions (README, "Beyond Mailchimp") --------------------------------


@dataclass(frozen=True, slots=True)
class OperationState:
    """One item of a batch's operations view: a result, or an operation not yet run."""

    seq: int
    page: int
    operation_id: str | None
    method: str
    path: str
    status: str  # "pending", "succeeded" or "failed"
    status_code: int | None
    response: Any
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OperationState:
        code = data.get("status_code")
        operation_id = data.get("operation_id")
        return cls(
            seq=_int(data.get("seq")),
            page=_int(data.get("page")),
            operation_id=None if operation_id is None else str(operation_id),
            method=str(data.get("method") or ""),
            path=str(data.get("path") or ""),
            status=str(data.get("status") or ""),
            status_code=None if code is None else _int(code),
            response=data.get("response"),
            raw=dict(data),
        )

    @property
    def error(self) -> str | None:
        """The problem's title and detail for a failure, else None."""
        if self.status != "failed":
            return None
        body = self.response if isinstance(self.response, Mapping) else {}
        return problem_text(
            str(body.get("title") or f"HTTP {self.status_code}"), str(body.get("detail") or "")
        )


@dataclass(frozen=True, slots=True)
class StreamedResult:
    """One line of a batch's NDJSON results: the response decoded, not a string."""

    operation_id: str | None
    status_code: int
    response: Any

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StreamedResult:
        operation_id = data.get("operation_id")
        return cls(
            operation_id=None if operation_id is None else str(operation_id),
            status_code=_int(data.get("status_code")),
            response=data.get("response"),
        )

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    """One progress event of a watched batch: `progress`, then `finished` (or `deleted`)."""

    event: str
    batch: Batch
    ops_per_second: float | None
    eta_seconds: float | None

    @classmethod
    def from_json(cls, event: str, data: Mapping[str, Any]) -> ProgressUpdate:
        def number(value: object) -> float | None:
            return float(value) if isinstance(value, int | float) else None

        return cls(
            event=event,
            batch=Batch.from_json(data),
            ops_per_second=number(data.get("ops_per_second")),
            eta_seconds=number(data.get("eta_seconds")),
        )

    @property
    def last(self) -> bool:
        return self.event in ("finished", "deleted")
