"""Settings: every bad value is one clear line naming its variable; secrets stay out of repr."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from conveyor.cli import main
from conveyor.settings import BatchSettings, Settings, SettingsError

BAD_VALUES = [
    ("CONVEYOR_PORT", "abc", "valid integer"),
    ("CONVEYOR_PORT", "70000", "less than or equal to 65535"),
    ("CONVEYOR_LOG_LEVEL", "loud", "'info'"),
    ("CONVEYOR_BATCH_WEBHOOK_ALLOW_PRIVATE", "flase", "valid boolean"),
    ("CONVEYOR_BATCH_CHUNK_SIZE", "0", "greater than 0"),
    ("CONVEYOR_BATCH_GROUP_SIZE", "5000", "must not exceed a chunk"),
    ("CONVEYOR_MAX_CONCURRENT_REQUESTS", "-3", "greater than 0"),
    ("CONVEYOR_REQUEST_TIMEOUT_SECONDS", "soon", "valid number"),
    ("CONVEYOR_DATABASE_URL", "mysql://db/x", "sqlite://"),
    ("CONVEYOR_BROKER_URL", "kafka://k", "redis://"),
    ("CONVEYOR_BLOB_URL", "ftp://f", "s3://"),
    ("CONVEYOR_LIMITER_URL", "memcached://m", "'database'"),
    ("CONVEYOR_PUBLIC_URL", "mail.example.com", "https://"),
]


@pytest.mark.parametrize(("variable", "value", "says"), BAD_VALUES)
def test_a_bad_value_is_one_line_naming_its_variable(
    variable: str, value: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        Settings.from_env()
    assert info.value.problems == [info.value.problems[0]]
    line = info.value.problems[0]
    assert line.startswith(f"{variable}: ") and says in line and "\n" not in line


@pytest.mark.parametrize(("variable", "value", "says"), BAD_VALUES[:6])
def test_the_cli_stops_with_exit_status_2_and_no_traceback(
    variable: str, value: str, says: str, tmp_path: object
) -> None:
    result = CliRunner().invoke(main, ["keys", "list"], env={variable: value})
    assert result.exit_code == 2, result.output
    assert f"Error: {variable}: " in result.output
    assert "Traceback" not in result.output


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_PORT", "x")
    monkeypatch.setenv("CONVEYOR_BATCH_CHUNK_SIZE", "0")
    monkeypatch.setenv("CONVEYOR_MAX_BODY_BYTES", "0")
    with pytest.raises(SettingsError) as info:
        Settings.from_env()
    named = sorted(line.split(":")[0] for line in info.value.problems)
    assert named == ["CONVEYOR_BATCH_CHUNK_SIZE", "CONVEYOR_MAX_BODY_BYTES", "CONVEYOR_PORT"]


def test_good_values_are_read_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_PORT", "9001")
    monkeypatch.setenv("CONVEYOR_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("CONVEYOR_BATCH_WEBHOOK_ALLOW_PRIVATE", "false")
    monkeypatch.setenv("CONVEYOR_BATCH_CHUNK_SIZE", "100")
    monkeypatch.setenv("CONVEYOR_BATCH_GROUP_SIZE", "100")
    settings = Settings.from_env(host="127.0.0.2", port=None)
    assert settings.port == 9001 and settings.host == "127.0.0.2"
    assert settings.log_level == "debug"
    assert settings.batches.webhook_allow_private is False
    assert (settings.batches.chunk_size, settings.batches.group_size) == (100, 100)
    assert Settings.from_env(port=7000).port == 7000


def test_secrets_never_appear_in_repr() -> None:
    settings = Settings(
        secret="signing-secret",
        s3_secret_access_key="s3-secret",
        database_url="postgresql://conveyor:db-password@db/conveyor",
        broker_url="amqp://guest:mq-password@mq:5672/",
    )
    shown = repr(settings) + str(settings)
    for secret in ("signing-secret", "s3-secret", "db-password", "mq-password"):
        assert secret not in shown
    assert "postgresql://conveyor:***@db/conveyor" in shown
    assert settings.secret == "signing-secret"  # the value itself is untouched


def test_sections_check_their_own_values() -> None:
    with pytest.raises(ValueError, match="must not exceed a chunk"):
        BatchSettings(chunk_size=10, group_size=11)
    assert BatchSettings(chunk_size=10, group_size=10).group_size == 10


def test_version_and_short_help() -> None:
    runner = CliRunner()
    version = runner.invoke(main, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("conveyor, version ")
    for args in (["-h"], ["serve", "-h"], ["keys", "create", "-h"]):
        shown = runner.invoke(main, args)
        assert shown.exit_code == 0 and "Usage: " in shown.output, args
