"""The progress meter: a rate over a sliding window, and the time left at that rate."""

from __future__ import annotations

import pytest

from conveyor.domain.progress import ProgressMeter, Rate


def test_no_rate_from_one_reading() -> None:
    assert ProgressMeter().observe(100.0, 50, 950) == Rate(0.0, None)


def test_rate_and_time_left() -> None:
    meter = ProgressMeter(window_seconds=10)
    meter.observe(0.0, 0, 1000)
    assert meter.observe(2.0, 200, 800) == Rate(100.0, 8.0)


def test_the_rate_follows_the_last_window() -> None:
    meter = ProgressMeter(window_seconds=4)
    for second in range(10):  # 100 operations a second
        meter.observe(float(second), second * 100, 10_000)
    for second in range(10, 20):  # then 10 a second
        rate = meter.observe(float(second), 900 + (second - 9) * 10, 5_000)
    assert rate.ops_per_second == pytest.approx(10.0)
    assert rate.eta_seconds == pytest.approx(500.0)


def test_nothing_left_is_zero_seconds_and_a_stall_has_no_estimate() -> None:
    meter = ProgressMeter()
    meter.observe(0.0, 10, 5)
    assert meter.observe(1.0, 10, 5) == Rate(0.0, None)
    assert meter.observe(2.0, 15, 0) == Rate(2.5, 0.0)


def test_readings_come_in_time_order() -> None:
    meter = ProgressMeter()
    meter.observe(5.0, 0, 1)
    with pytest.raises(ValueError):
        meter.observe(4.0, 0, 1)
