"""What the dashboard's pages show, computed from stored rows: pure, no I/O, no HTML.

The templates only lay these out, so everything a page claims (a percentage, a rate, a
failure's title) is decided, and tested, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from conveyor.domain.audience import FORGOTTEN
from conveyor.domain.clock import Clock
from conveyor.domain.states import BatchStatus
from conveyor.storage.batch_results import OperationRow
from conveyor.storage.batches import BatchRow
from conveyor.storage.webhooks import DeliveryRow

# The statuses an audience's table counts, in the order of its columns.
MEMBER_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")


def _instant(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def utc_now(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.now(), UTC)


def short_time(text: str) -> str:
    """`2026-11-29 01:02:03` (UTC) from a stored time; empty for none."""
    instant = _instant(text)
    return instant.strftime("%Y-%m-%d %H:%M:%S") if instant else ""


def percent(done: int, total: int) -> int:
    """Whole percent done, 100 only when everything is (never rounded up to it)."""
    if total <= 0:
        return 0
    return 100 if done >= total else min(int(done * 100 / total), 99)


def duration_text(seconds: float | None) -> str:
    """`42 s`, `3 min 5 s`, `2 h 4 min`; empty for unknown."""
    if seconds is None or seconds < 0:
        return ""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@dataclass(frozen=True, slots=True)
class BatchSummary:
    id: str
    status: str
    total: int
    finished: int
    errored: int
    percent: int
    submitted_at: str
    completed_at: str
    # Operations per second over the batch's life so far (to `completed_at` once finished).
    ops_per_second: float
    canceled: bool
    retry_of: str | None

    @property
    def running(self) -> bool:
        return self.status != BatchStatus.FINISHED

    @property
    def succeeded(self) -> int:
        return self.finished - self.errored

    @property
    def can_cancel(self) -> bool:
        return self.running and not self.canceled

    @property
    def can_retry(self) -> bool:
        return not self.running and self.errored > 0

    def as_json(self) -> dict[str, Any]:
        """What a page's script needs to redraw the batch without a reload."""
        return {
            "id": self.id,
            "status": self.status,
            "total": self.total,
            "finished": self.finished,
            "errored": self.errored,
            "percent": self.percent,
            "submitted_at": self.submitted_at,
            "completed_at": self.completed_at,
            "ops_per_second": self.ops_per_second,
            "canceled": self.canceled,
            "running": self.running,
        }


def batch_summary(batch: BatchRow, now: datetime) -> BatchSummary:
    submitted, completed = _instant(batch.submitted_at), _instant(batch.completed_at)
    end = completed or now
    # Stored times have whole seconds: a batch done within its first second ran at least
    # this fast, not infinitely fast.
    elapsed = max((end - submitted).total_seconds(), 1.0) if submitted else 0.0
    rate = batch.finished_operations / elapsed if elapsed > 0 else 0.0
    return BatchSummary(
        id=batch.id,
        status=batch.status,
        total=batch.total_operations,
        finished=batch.finished_operations,
        errored=batch.errored_operations,
        percent=percent(batch.finished_operations, batch.total_operations),
        submitted_at=short_time(batch.submitted_at),
        completed_at=short_time(batch.completed_at),
        ops_per_second=round(rate, 1),
        canceled=batch.canceled,
        retry_of=batch.retry_of,
    )


@dataclass(frozen=True, slots=True)
class Failure:
    operation_id: str
    method: str
    path: str
    status_code: int
    title: str
    detail: str


def failure(row: OperationRow) -> Failure:
    """A failed result as its table row: the problem document's title and detail, where the
    answer is one (an operation may also fail with any other body)."""
    title = detail = ""
    try:
        answer = orjson.loads(row.response) if row.response else None
    except orjson.JSONDecodeError:
        answer = None
    if isinstance(answer, dict):
        title, detail = str(answer.get("title") or ""), str(answer.get("detail") or "")
        errors = answer.get("errors")
        if isinstance(errors, list) and errors:
            fields = "; ".join(
                f"{error.get('field') or '—'}: {error.get('message', '')}"
                for error in errors
                if isinstance(error, dict)
            )
            detail = f"{detail} ({fields})" if detail else fields
    return Failure(
        operation_id=row.operation_id or "",
        method=row.method,
        path=row.path,
        status_code=row.status_code or 0,
        title=title,
        detail=detail,
    )


@dataclass(frozen=True, slots=True)
class Page:
    """Where a table is in its rows: 1-based `first`..`last` of `total`."""

    offset: int
    count: int
    total: int

    @property
    def first(self) -> int:
        return min(self.offset + 1, self.total)

    @property
    def last(self) -> int:
        return min(self.offset + self.count, self.total)

    @property
    def previous_offset(self) -> int | None:
        return max(self.offset - self.count, 0) if self.offset > 0 else None

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.count if self.offset + self.count < self.total else None


def offset_param(raw: str | None, limit: int = 10**9) -> int:
    """A page's `offset` from the query string: bad or negative values mean the start."""
    try:
        value = int(raw or 0)
    except ValueError:
        return 0
    return min(max(value, 0), limit)


@dataclass(frozen=True, slots=True)
class AudienceSummary:
    list_id: str
    name: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        """Every member but the erased ones."""
        return sum(n for status, n in self.counts.items() if status != FORGOTTEN)


@dataclass(frozen=True, slots=True)
class FoundMember:
    list_id: str
    list_name: str
    email_address: str
    status: str
    merge_fields: dict[str, Any]
    tags: list[str]
    last_changed: str


def found_member(
    list_id: str, list_name: str, email: str, status: str, data: dict[str, Any], changed: str
) -> FoundMember:
    merge = data.get("merge_fields") or {}
    tags = [str(tag.get("name", "")) for tag in data.get("tags") or [] if isinstance(tag, dict)]
    shown = {name: value for name, value in merge.items() if value not in ("", None, {})}
    return FoundMember(list_id, list_name, email, status, shown, tags, short_time(changed))


def _ts_text(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class DeliveryView:
    id: str
    batch_id: str
    state: str
    attempts: int
    last_status_code: int | None
    last_error: str
    created_at: str
    delivered_at: str
    # Empty once the delivery is done (delivered, or given up).
    next_attempt_at: str
    pending: bool


def delivery_view(row: DeliveryRow) -> DeliveryView:
    pending = row.is_pending
    return DeliveryView(
        id=row.id,
        batch_id=row.batch_id,
        state=row.state,
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error or "",
        created_at=_ts_text(row.created_ts),
        delivered_at=_ts_text(row.delivered_ts),
        next_attempt_at=_ts_text(row.next_attempt_ts) if pending else "",
        pending=pending,
    )
