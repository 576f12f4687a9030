"""`conveyor members sync` against a live `conveyor serve`, from real SQLite, PostgreSQL and
MariaDB databases of 20,000 contacts: web_ids written back, failures kept, incremental runs,
and a run killed midway that resumes without sending anything twice."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conveyor.client.dbsync.mapping import NO_EMAIL
from tests.client.conftest import Live
from tests.client.sync_support import (
    Source,
    batch_ids,
    email_for,
    new_batches_operations,
    open_source,
    server_members,
    tags_for,
)
from tests.e2e.server import child_env, conveyor_command, run_cli

pytestmark = pytest.mark.e2e

ROWS = 20_000
CHUNK = 5_000
NO_ADDRESS = {row for row in range(1, ROWS + 1) if not email_for(row)}
REFUSED = {row for row in range(1, ROWS + 1) if row % 500 == 0}
GOOD = set(range(1, ROWS + 1)) - NO_ADDRESS - REFUSED
TAGGED = {row for row in GOOD if tags_for(row)}
# Every good row is one upsert and, with tags, one tag operation; refused rows one upsert.
OPERATIONS = len(GOOD) + len(REFUSED) + len(TAGGED)
CHUNKS = ROWS // CHUNK


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    yield from open_source(request.param, tmp_path, request)


def sync_args(source: Source, list_id: str, state: list[str]) -> list[str]:
    return [
        "members", "sync",
        "--from", source.url,
        "--query", source.query,
        "--list", list_id,
        "--map", "first_name=FNAME",
        "--since-column", "updated_at",
        "--chunk-size", str(CHUNK),
        "--write-back", source.write_back,
        *state,
    ]  # fmt: skip


def assert_written_back(source: Source, live: Live, list_id: str) -> None:
    """Every good contact has the server's web_id; every failure is there with its error."""
    members = server_members(live.client, list_id)
    assert len(members) == len(GOOD)
    for row_id, email, web_id, member_id, unique_email_id, status, error in source.outcome():
        if row_id in NO_ADDRESS:
            assert (web_id, status, error) == (None, None, NO_EMAIL), row_id
        elif row_id in REFUSED:
            assert (web_id, status) == (None, 400), row_id
            assert error == (
                f"Invalid Resource: {email} looks fake or invalid, please enter a real email "
                "address."
            )
        else:
            assert (web_id, member_id, unique_email_id) == members[email.lower()], row_id
            assert (status, error) == (200, None), row_id


def test_sync_writes_web_ids_back_and_a_second_run_sends_nothing(
    live: Live, source: Source
) -> None:
    source.fill(ROWS)
    list_id = live.new_list()
    state = ["--state-table", "conveyor_sync_state"]
    before = batch_ids(live.client)
    first = run_cli(*sync_args(source, list_id, state), env=live.env, timeout=120)
    print(first.stderr[-3000:])
    # Rows failed (refused addresses, rows without one): the exit status says so.
    assert first.returncode == 1
    failed = len(REFUSED) + len(NO_ADDRESS)
    assert f"{ROWS} rows read, {CHUNKS} chunks, {2 * CHUNKS} batches" in first.stderr
    assert f"{ROWS - failed} succeeded, {failed} failed ({len(NO_ADDRESS)} without" in first.stderr
    assert f"Error: {failed} rows failed; see the write-back" in first.stderr
    assert new_batches_operations(live.client, before) == (2 * CHUNKS, OPERATIONS)
    assert_written_back(source, live, list_id)
    tagged = email_for(min(TAGGED)).lower()
    member = live.client.request("GET", f"lists/{list_id}/members/{tagged}")
    assert sorted(tag["name"] for tag in member["tags"]) == ["newsletter", "vip"]

    before = batch_ids(live.client)
    second = run_cli(*sync_args(source, list_id, state), env=live.env, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "0 rows read, 0 chunks, 0 batches" in second.stderr
    assert batch_ids(live.client) == before

    # Changed rows, and only they, go in the next run.
    source.touch([5, 6, 7001], "Changed")
    third = run_cli(*sync_args(source, list_id, state), "--json", env=live.env, timeout=120)
    assert third.returncode == 0, third.stderr
    summary = json.loads(third.stdout)
    assert (summary["rows_read"], summary["operations_sent"], summary["failed"]) == (3, 3, 0)
    assert new_batches_operations(live.client, before) == (1, 3)
    changed = live.client.request("GET", f"lists/{list_id}/members/{email_for(7001).lower()}")
    assert changed["merge_fields"]["FNAME"] == "Changed7001"
    assert_written_back(source, live, list_id)


def read_state(source: Source, state_file: Path | None) -> dict[str, Any] | None:
    if state_file is not None:
        try:
            return dict(json.loads(state_file.read_bytes()))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
    try:
        with source.engine.connect() as conn:
            raw = conn.execute(sa.text("SELECT state FROM conveyor_sync_state")).scalar()
    except sa.exc.DBAPIError:
        return None  # the table is not made yet
    return None if raw is None else dict(json.loads(raw))


def test_a_sync_killed_midway_resumes_without_sending_twice(
    live: Live, source: Source, tmp_path: Path
) -> None:
    source.fill(ROWS)
    list_id = live.new_list()
    # The state in a file for SQLite, in a table of the source elsewhere: both stores resume.
    state_file = tmp_path / "sync.json" if source.kind == "sqlite" else None
    state = ["--state", str(state_file)] if state_file else ["--state-table", "conveyor_sync_state"]
    before = batch_ids(live.client)
    process = subprocess.Popen(
        conveyor_command(*sync_args(source, list_id, state)),
        env=child_env(live.env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Killed while it waits for the second chunk's batch: submitted, nothing written back.
        deadline = time.monotonic() + 60
        seen: dict[str, Any] | None = None
        while time.monotonic() < deadline and process.poll() is None:
            seen = read_state(source, state_file)
            chunk = (seen or {}).get("chunk") or {}
            if chunk.get("seq") == 2 and chunk.get("batch_id") and not chunk.get("written"):
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)  # the poll interval of a state poll: the sync has no join
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, "the sync ended before the kill point"
    killed = read_state(source, state_file)
    assert killed is not None and killed["chunk"]["batch_id"], killed
    assert killed["chunks_done"] == 1

    rerun = run_cli(*sync_args(source, list_id, state), env=live.env, timeout=120)
    print(rerun.stderr[-3000:])
    assert rerun.returncode == 1  # the refused rows, as in an uninterrupted run
    assert "resuming chunk 2" in rerun.stderr and "waiting for its batch" in rerun.stderr
    assert new_batches_operations(live.client, before) == (2 * CHUNKS, OPERATIONS)
    assert_written_back(source, live, list_id)
    finished = read_state(source, state_file)
    assert finished is not None
    assert finished["chunk"] is None and finished["chunks_done"] == CHUNKS
