"""What the dashboard's pages claim, decided without a server: percentages, rates, pages of
a table, a failure's title and detail, where sign-in may send a visitor."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.http.dashboard.pages import _safe_next
from conveyor.http.dashboard.views import (
    Page,
    batch_summary,
    duration_text,
    failure,
    offset_param,
    percent,
)
from conveyor.storage.batch_results import OperationRow
from conveyor.storage.batches import BatchRow

counts = st.integers(min_value=0, max_value=10**9)


@given(counts, counts)
def test_percent_says_100_only_when_everything_is_done(done: int, total: int) -> None:
    shown = percent(done, total)
    assert 0 <= shown <= 100
    assert (shown == 100) == (total > 0 and done >= total)
    if total > 0 and done < total:
        assert shown <= done * 100 / total


@given(counts, st.integers(min_value=1, max_value=10**9))
def test_percent_never_goes_down_as_work_is_done(done: int, total: int) -> None:
    assert percent(done, total) <= percent(done + 1, total)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (-1, ""), (0, "0 s"), (42.4, "42 s"), (185, "3 min 5 s"), (7440, "2 h 4 min")],
)
def test_durations_read_as_people_say_them(seconds: float | None, text: str) -> None:
    assert duration_text(seconds) == text


def row(**values: object) -> BatchRow:
    defaults: dict[str, object] = {
        "id": "abc1234567",
        "account_pk": 1,
        "status": "started",
        "total_operations": 1000,
        "finished_operations": 250,
        "errored_operations": 3,
        "submitted_at": "2026-11-29T01:00:00+00:00",
        "completed_at": "",
        "api_root": "http://x/3.0",
        "archive_key": None,
    }
    defaults.update(values)
    return BatchRow(**defaults)  # type: ignore[arg-type]


def test_a_running_batch_summary() -> None:
    now = datetime(2026, 11, 29, 1, 0, 50, tzinfo=UTC)
    summary = batch_summary(row(), now)
    assert (summary.percent, summary.ops_per_second) == (25, 5.0)
    assert summary.running and summary.can_cancel and not summary.can_retry
    assert summary.submitted_at == "2026-11-29 01:00:00" and summary.completed_at == ""
    assert summary.succeeded == 247


def test_a_finished_batch_is_rated_over_its_run_and_never_by_zero() -> None:
    later = datetime(2026, 11, 30, tzinfo=UTC)
    done = row(
        status="finished", finished_operations=1000, completed_at="2026-11-29T01:00:20+00:00"
    )
    summary = batch_summary(done, later)
    assert summary.ops_per_second == 50.0 and summary.can_retry and not summary.can_cancel
    instant = row(status="finished", finished_operations=1000, completed_at=done.submitted_at)
    assert batch_summary(instant, later).ops_per_second == 1000.0  # whole seconds: ≥ 1 s
    canceled = row(status="started", canceled_at="2026-11-29T01:00:05+00:00")
    assert not batch_summary(canceled, later).can_cancel


def op(response: object, status: int = 400) -> OperationRow:
    text = response if isinstance(response, str) else orjson.dumps(response).decode()
    return OperationRow(1, 0, "op-1", "POST", "/lists/x/members", status, text)


def test_a_failure_shows_the_problem_and_its_field_errors() -> None:
    problem = {
        "title": "Invalid Resource",
        "detail": "Your merge fields were invalid.",
        "errors": [{"field": "FNAME", "message": "Too long"}, {"field": "", "message": "Bad"}],
    }
    shown = failure(op(problem))
    assert shown.title == "Invalid Resource"
    assert shown.detail == "Your merge fields were invalid. (FNAME: Too long; —: Bad)"
    assert (shown.operation_id, shown.status_code) == ("op-1", 400)


@pytest.mark.parametrize("response", ["not json", "[1, 2]", "null", "", {"title": None}])
def test_a_failure_with_another_body_shows_no_title(response: object) -> None:
    shown = failure(op(response, 500))
    assert (shown.title, shown.status_code) == ("", 500)


@given(st.integers(0, 10**6), st.integers(1, 500), st.integers(0, 10**6))
def test_pages_cover_every_row_once(offset: int, count: int, total: int) -> None:
    page = Page(offset, count, total)
    if offset < total:
        assert page.first == offset + 1 and page.last == min(offset + count, total)
    if page.next_offset is not None:
        assert page.next_offset == page.last == offset + count < total
    if page.previous_offset is not None:
        assert 0 <= page.previous_offset < offset


@pytest.mark.parametrize(
    ("raw", "offset"), [(None, 0), ("", 0), ("25", 25), ("-5", 0), ("x", 0), ("1e9", 0)]
)
def test_a_bad_offset_means_the_start(raw: str | None, offset: int) -> None:
    assert offset_param(raw) == offset


@pytest.mark.parametrize(
    ("raw", "target"),
    [
        (None, "/dashboard/batches"),
        ("/dashboard/audiences?email=a", "/dashboard/audiences?email=a"),
        ("/dashboard/batches/abc", "/dashboard/batches/abc"),
        ("https://evil.example/", "/dashboard/batches"),
        ("//evil.example/", "/dashboard/batches"),
        ("/dashboard\\..\\evil", "/dashboard/batches"),
        ("/3.0/ping", "/dashboard/batches"),
        ("/dashboardx", "/dashboard/batches"),
    ],
)
def test_sign_in_sends_a_visitor_only_to_a_dashboard_page(raw: str | None, target: str) -> None:
    assert _safe_next(raw) == target
