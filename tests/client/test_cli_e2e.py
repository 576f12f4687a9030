"""The commands against a live `conveyor serve`: a 10,000-row import end to end, batch files,
results, errors, webhooks."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from conveyor.client import ConveyorApiError
from conveyor.client.member_import import NO_EMAIL, RESULT_COLUMNS
from conveyor.client.webhooks import parse_webhook_body, verify_signature
from tests.client.conftest import Live
from tests.client.support import invoke
from tests.webhooks.receiver import running_receiver

pytestmark = pytest.mark.e2e

ROWS = 10_000


def email_for(row: int) -> str:
    if row % 250 == 0:
        return f"not-an-email-{row}"  # 40 rows the server refuses
    if row in (17, 5001, 9999):
        return ""  # nothing to send
    if row == 42:
        return "User41@Example.org"  # the same member as row 41, in other case
    return f"user{row}@example.org"


INVALID = {row for row in range(1, ROWS + 1) if row % 250 == 0}
BLANK = {17, 5001, 9999}


@dataclass
class Imported:
    live: Live
    source: Path
    results_csv: Path
    batch_id: str
    stderr: str


@pytest.fixture(scope="module")
def imported(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Imported:
    folder = tmp_path_factory.mktemp("import")
    source = folder / "members.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "FNAME", "LNAME", "notes"])
        for row in range(1, ROWS + 1):
            writer.writerow([email_for(row), f"First{row}", "" if row % 2 else f"Last{row}", "x"])
    done = invoke("members", "import", str(source), "--list", live.list_id, "--wait",
                  env=live.env)  # fmt: skip
    # Rows failed (refused addresses, rows without one): the exit status says so.
    assert done.exit_code == 1, done.output
    batch_id = done.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{10}", batch_id), done.stdout
    return Imported(live, source, folder / "members.results.csv", batch_id, done.stderr)


def test_import_of_10000_rows_reports_progress(imported: Imported) -> None:
    err = imported.stderr
    print(err[-2000:])
    assert "ignoring columns that match no merge field of the list: notes" in err
    assert f"target: {imported.live.server.base_url.split('//')[1]} (Conveyor server)" in err
    assert err.rstrip().endswith(
        f"Error: {len(INVALID) + len(BLANK)} rows did not go in; see {imported.results_csv}"
    )
    assert f"submitted batch {imported.batch_id}: {ROWS - len(BLANK)} upserts" in err
    # Off a terminal the progress bar becomes one line per change, ending at the total.
    progress = re.findall(rf"batch {imported.batch_id}: (\w+), (\d+)/(\d+) operations", err)
    assert progress, err
    assert progress[-1] == ("finished", str(ROWS - len(BLANK)), str(ROWS - len(BLANK)))
    assert [int(done) for _, done, _ in progress] == sorted(int(d) for _, d, _ in progress)
    assert (
        f"{ROWS} rows: {ROWS - len(BLANK) - len(INVALID)} imported, {len(INVALID)} failed, "
        f"{len(BLANK)} skipped; results in {imported.results_csv}"
    ) in err


def test_import_results_csv_row_by_row(imported: Imported) -> None:
    with imported.results_csv.open(newline="") as handle:
        reader = csv.reader(handle)
        assert tuple(next(reader)) == RESULT_COLUMNS
        rows = list(reader)
    assert len(rows) == ROWS
    web_ids: dict[str, str] = {}
    for number, (row, operation_id, email, status, web_id, error) in enumerate(rows, start=1):
        assert row == str(number)
        assert operation_id == str(number)
        assert email == email_for(number)
        if number in BLANK:
            assert (status, web_id, error) == ("", "", NO_EMAIL)
        elif number in INVALID:
            assert (status, web_id) == ("400", "")
            assert error == (
                f"Invalid Resource: {email} looks fake or invalid, please enter a real email "
                "address."
            )
        else:
            assert status == "200", (number, error)
            assert web_id.isdigit() and error == ""
            web_ids.setdefault(email.lower(), web_id)
            assert web_ids[email.lower()] == web_id  # one member, one web_id
    assert rows[41][4] == rows[40][4]  # rows 41 and 42 are the same member
    assert len(set(web_ids.values())) == len(web_ids)
    members = imported.live.client.request(
        "GET", f"lists/{imported.live.list_id}/members", params={"count": 1}
    )
    assert members["total_items"] == len(web_ids)


def test_failed_only_lists_exactly_the_failures(imported: Imported) -> None:
    done = invoke("batch", "results", imported.batch_id, "--failed-only", env=imported.live.env)
    assert done.exit_code == 0, done.output
    lines = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert sorted(int(line["operation_id"]) for line in lines) == sorted(INVALID)
    assert {line["status_code"] for line in lines} == {400}
    assert all(
        line["ok"] is False and line["body"]["title"] == "Invalid Resource" for line in lines
    )
    assert f"{len(INVALID)} failed results" in done.stderr

    as_csv = invoke("batch", "results", imported.batch_id, "--failed-only", "--format", "csv",
                    env=imported.live.env)  # fmt: skip
    failed_rows = list(csv.DictReader(as_csv.stdout.splitlines()))
    assert sorted(int(r["operation_id"]) for r in failed_rows) == sorted(INVALID)
    assert all(json.loads(r["response"])["status"] == 400 for r in failed_rows)

    everything = invoke("batch", "results", imported.batch_id, env=imported.live.env)
    assert len(everything.stdout.splitlines()) == ROWS - len(BLANK)
    assert f"{ROWS - len(BLANK)} results, {len(INVALID)} failed" in everything.stderr


def test_import_without_wait_then_results_later(live: Live, tmp_path: Path) -> None:
    source = tmp_path / "few.csv"
    source.write_text("id,Email_Address,FNAME\nk1,a@example.org,A\nk2,nope,B\n")
    out = tmp_path / "elsewhere.csv"
    done = invoke("members", "import", str(source), "--list", live.new_list(), env=live.env)
    assert done.exit_code == 0, done.output
    batch_id = done.stdout.strip()
    assert f"conveyor members results {source} {batch_id}" in done.stderr
    assert not (tmp_path / "few.results.csv").exists()
    later = invoke("members", "results", str(source), batch_id, "--out", str(out), env=live.env)
    assert later.exit_code == 1, later.output  # k2 failed
    with out.open(newline="") as written:
        rows = list(csv.DictReader(written))
    assert [(r["operation_id"], r["status_code"]) for r in rows] == [("k1", "200"), ("k2", "400")]


def test_submit_json_and_jsonl_then_status_list_results_cancel(live: Live, tmp_path: Path) -> None:
    members = f"/lists/{live.list_id}/members"
    as_json = tmp_path / "ops.json"
    as_json.write_text(json.dumps({"operations": [
        {"method": "post", "path": members.lstrip("/"), "operation_id": "a",
         "body": {"email_address": "json1@example.org", "status": "subscribed"}},
        {"method": "GET", "path": "/ping", "operation_id": "b"},
    ]}))  # fmt: skip
    as_jsonl = tmp_path / "ops.jsonl"
    as_jsonl.write_text(
        json.dumps({"method": "GET", "path": "/ping", "operation_id": "x"})
        + "\n\n"
        + json.dumps({"method": "GET", "path": "/lists/nope", "operation_id": "y"})
        + "\n"
    )
    first = invoke("batch", "submit", str(as_json), "--wait", env=live.env)
    assert first.exit_code == 0, first.output
    first_id = first.stdout.strip()
    assert f"batch {first_id} finished: 2 operations, 2 succeeded, 0 errored" in first.stderr

    second = invoke("batch", "submit", str(as_jsonl), "--wait", env=live.env)
    assert second.exit_code == 0, second.output
    second_id = second.stdout.strip()
    assert f"conveyor batch results {second_id} --failed-only" in second.stderr

    piped = invoke("batch", "submit", "-", "--wait", env=live.env, input=as_jsonl.read_text())
    assert piped.exit_code == 0, piped.output
    assert "2 operations, 1 succeeded, 1 errored" in piped.stderr

    status = invoke("batch", "status", second_id, env=live.env)
    assert re.search(r"status\s+finished", status.stdout)
    assert re.search(r"errored_operations\s+1", status.stdout)
    raw = orjson.loads(invoke("batch", "status", first_id, "--json", env=live.env).stdout)
    assert raw["id"] == first_id and raw["response_body_url"]

    listed = invoke("batch", "list", "--count", "1000", "--json", env=live.env)
    assert {first_id, second_id} <= {
        orjson.loads(line)["id"] for line in listed.stdout.splitlines()
    }
    table = invoke("batch", "list", env=live.env)
    assert first_id in table.stdout and "finished" in table.stdout

    out = tmp_path / "second.csv"
    results = invoke("batch", "results", second_id, "--format", "csv", "--out", str(out),
                     env=live.env)  # fmt: skip
    assert results.exit_code == 0 and results.stdout == ""
    with out.open(newline="") as written:
        rows = {r["operation_id"]: r for r in csv.DictReader(written)}
    assert rows["x"]["ok"] == "true" and json.loads(rows["x"]["response"])["health_status"]
    assert rows["y"]["ok"] == "false" and rows["y"]["error"].startswith("Resource Not Found:")

    deleted = invoke("batch", "delete", first_id, env=live.env)
    assert deleted.exit_code == 0 and "no longer available" in deleted.stderr
    with pytest.raises(ConveyorApiError) as gone:
        live.client.get(first_id)
    assert gone.value.status == 404


def test_errors_show_the_problem_title_and_detail(live: Live, tmp_path: Path) -> None:
    missing = invoke("batch", "status", "0000000000", env=live.env)
    assert missing.exit_code == 1
    assert missing.stderr.strip() == (
        "Error: Resource Not Found: The requested resource could not be found."
    )
    wrong_key = invoke("batch", "list", "--url", live.server.base_url,
                       "--api-key", "0" * 32 + "-us1")  # fmt: skip
    assert wrong_key.exit_code == 1
    assert wrong_key.stderr.startswith("Error: API Key Invalid: ")
    nothing = invoke("batch", "list")
    assert nothing.exit_code == 2 and "no target: give --url" in nothing.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert invoke("batch", "submit", str(empty), env=live.env).exit_code == 2
    no_method = tmp_path / "bad.jsonl"
    no_method.write_text('{"path": "/ping"}\n')
    refused = invoke("batch", "submit", str(no_method), env=live.env)
    assert refused.exit_code == 1
    assert "operations[0].method is required" in refused.stderr
    unfinished = invoke("batch", "results", "0000000000", env=live.env)
    assert unfinished.exit_code == 1 and "Resource Not Found" in unfinished.stderr


def test_webhooks_add_list_rm_and_a_signed_delivery(live: Live) -> None:
    with running_receiver() as receiver:
        added = invoke("webhooks", "add", receiver.url, env=live.env)
        assert added.exit_code == 0, added.output
        webhook_id, secret = added.stdout.split()
        assert "shown only now" in added.stderr

        listed = invoke("webhooks", "list", "--json", env=live.env)
        hooks = [orjson.loads(line) for line in listed.stdout.splitlines()]
        assert {(h["id"], h["url"], h["enabled"]) for h in hooks} == {
            (webhook_id, receiver.url, True)
        }
        assert "secret" not in hooks[0]
        assert webhook_id in invoke("webhooks", "list", env=live.env).stdout

        batch = live.client.submit([{"method": "GET", "path": "/ping", "operation_id": "p"}])
        live.client.wait(batch.id, timeout=60)
        deliveries = [
            post
            for post in receiver.wait_for_posts(1, timeout=60)
            if parse_webhook_body(post.body)["data"]["id"] == batch.id
        ]
        assert deliveries, "no delivery for the batch"
        delivery = deliveries[0]
        header = delivery.headers.get("X-Mailchimp-Signature")
        assert verify_signature(secret, header, delivery.body)
        assert not verify_signature(secret, header, delivery.body + b"&x=1")
        assert not verify_signature("another-secret", header, delivery.body)
        payload = parse_webhook_body(delivery.body)
        assert payload["type"] == "batch_operation_completed"
        assert payload["data"]["total_operations"] == 1
        assert payload["data"]["errored_operations"] == 0
        assert payload["data"]["_links"][0]["rel"]

        removed = invoke("webhooks", "rm", webhook_id, env=live.env)
        assert removed.exit_code == 0
        assert invoke("webhooks", "list", "--json", env=live.env).stdout == ""
        again = invoke("webhooks", "rm", webhook_id, env=live.env)
        assert again.exit_code == 1 and "Resource Not Found" in again.stderr
