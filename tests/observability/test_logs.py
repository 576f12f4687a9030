"""Log lines of a real `conveyor serve`: one per request and per batch step, carrying the
request id, the account and the batch id; JSON lines parse; no API key or secret appears."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.observability.logs import ContextFilter
from tests.e2e.server import ServerProcess

SECRET = "server-secret-that-must-never-be-logged"
ADMIN = "admin-token-that-must-never-be-logged"


def _exercise(server: ServerProcess) -> dict[str, Any]:
    """Requests that succeed, fail and run a batch with failures; what the logs must show."""
    with httpx.Client(base_url=server.api_url, auth=("x", server.key), timeout=30) as client:
        listed = client.post("/lists", json={
            "name": "n", "permission_reminder": "p", "email_type_option": False,
            "contact": {"company": "c", "address1": "a", "city": "c", "state": "s",
                        "zip": "1", "country": "US"},
            "campaign_defaults": {"from_name": "f", "from_email": "f@example.org",
                                  "subject": "s", "language": "en"},
        })  # fmt: skip
        assert listed.status_code == 200, listed.text
        list_id = listed.json()["id"]
        operations = [
            {"method": "POST", "path": f"/lists/{list_id}/members",
             "body": json.dumps({"email_address": email, "status": "subscribed"})}
            for email in ("a@example.org", "not-an-email", "b@example.org")
        ]  # fmt: skip
        submitted = client.post("/batches", json={"operations": operations})
        assert submitted.status_code == 200, submitted.text
        batch_id = submitted.json()["id"]
        deadline = time.monotonic() + 60
        while client.get(f"/batches/{batch_id}").json()["status"] != "finished":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        account = client.get("/").json()["account_id"]
        refused = httpx.get(server.api_url + "/lists", auth=("x", server.key[:-1] + "9"))
        assert refused.status_code == 401
        # The key in a path and a query must not reach the logs either.
        client.get(f"/lists/{server.key}", params={"apikey": server.key})
    return {
        "batch_id": batch_id,
        "account": account,
        "list_request_id": listed.headers["x-request-id"],
        "refused_request_id": refused.headers["x-request-id"],
    }


def _assert_no_secrets(text: str, server: ServerProcess) -> None:
    assert server.key not in text
    assert server.key.split("-")[0] not in text
    assert SECRET not in text
    assert ADMIN not in text


@pytest.mark.e2e
def test_json_lines_carry_the_ids_and_no_secret(tmp_path: Path) -> None:
    env = {"CONVEYOR_LOG_FORMAT": "json", "CONVEYOR_SECRET": SECRET, "CONVEYOR_ADMIN_TOKEN": ADMIN}
    with ServerProcess(tmp_path / "server", env=env) as server:
        expected = _exercise(server)
        server.stop()
        text = server.stderr_text()
    _assert_no_secrets(text, server)
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    # Every log line is JSON (uvicorn's too); the rest are the CLI's own banner lines.
    others = [line for line in text.splitlines() if line.strip() and not line.startswith("{")]
    assert not [line for line in others if line[:2] == "20" or "INFO" in line], others
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    requests = [line for line in lines if line["logger"] == "conveyor.requests"]
    by_id = {line["request_id"]: line for line in requests}
    created = by_id[expected["list_request_id"]]
    assert created["method"] == "POST"
    assert created["route"] == "/3.0/lists"
    assert created["status"] == 200
    assert created["account"] == expected["account"]
    assert created["duration_ms"] >= 0
    refused = by_id[expected["refused_request_id"]]
    assert refused["status"] == 401 and "account" not in refused
    polls = [line for line in requests if line["route"] == "/3.0/batches/{batch_id}"]
    assert polls and all(line["batch_id"] == expected["batch_id"] for line in polls)

    steps = [line for line in lines if line["logger"] == "conveyor.steps"]
    mine = [line for line in steps if line.get("batch_id") == expected["batch_id"]]
    assert {line["step"] for line in mine} >= {"preprocess", "work", "finalize"}
    assert sum(line["succeeded"] for line in mine) == 2
    assert sum(line["failed"] for line in mine) == 1
    # Lines logged inside a step carry its batch id too (the engine's own).
    finished = [line for line in lines if "finished:" in line["message"]]
    assert finished and finished[0]["batch_id"] == expected["batch_id"]


@pytest.mark.e2e
def test_text_lines_for_people(tmp_path: Path) -> None:
    env = {"CONVEYOR_SECRET": SECRET}
    with ServerProcess(tmp_path / "server", env=env) as server:
        expected = _exercise(server)
        server.stop()
        text = server.stderr_text()
    _assert_no_secrets(text, server)
    request_lines = [line for line in text.splitlines() if "conveyor.requests" in line]
    assert any(
        "POST /3.0/lists 200" in line
        and f"request_id={expected['list_request_id']}" in line
        and f"account={expected['account']}" in line
        for line in request_lines
    )
    assert any(
        f"batch step work {expected['batch_id']}" in line
        and "2 operations succeeded, 1 failed" in line
        for line in text.splitlines()
    )


def test_masking_covers_keys_and_known_secrets() -> None:
    masker = ContextFilter(["a-long-server-secret"])
    key = "0123456789abcdef0123456789abcdef-us6"
    assert masker.mask(f"key {key} and a-long-server-secret") == "key ***-us6 and ***"
