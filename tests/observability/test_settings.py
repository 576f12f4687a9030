"""The observability settings read from CONVEYOR_* variables, checked at load."""

from __future__ import annotations

import pytest

from conveyor.settings import Settings, SettingsError


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_LOG_FORMAT", "JSON")
    monkeypatch.setenv("CONVEYOR_METRICS_ENABLED", "false")
    monkeypatch.setenv("CONVEYOR_METRICS_TOKEN", "scrape-token-0123456789")
    settings = Settings.from_env()
    assert settings.log_format == "json"
    assert settings.metrics_enabled is False
    assert settings.metrics_token == "scrape-token-0123456789"
    assert "scrape-token" not in repr(settings)


def test_a_bad_format_is_one_line_naming_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env()
    assert caught.value.problems[0].startswith("CONVEYOR_LOG_FORMAT:")


def test_defaults() -> None:
    settings = Settings()
    assert (settings.log_format, settings.metrics_enabled, settings.metrics_token) == (
        "text",
        True,
        None,
    )
