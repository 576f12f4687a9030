"""Each message and exit status of the commands, against a live `conveyor serve`: the target
(no accidental Mailchimp), stdin and unknown file formats, plurals, import checks, `lists`,
webhook deliveries and `--json`."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import orjson
import pytest

from tests.client.conftest import Live
from tests.client.support import invoke
from tests.webhooks.receiver import running_receiver

pytestmark = pytest.mark.e2e

PING = {"method": "GET", "path": "/ping", "operation_id": "p"}


def host_of(live: Live) -> str:
    return live.server.base_url.split("//", 1)[1]


def test_without_a_target_nothing_is_sent_anywhere(live: Live, tmp_path: Path) -> None:
    ops = tmp_path / "ops.jsonl"
    ops.write_text(json.dumps(PING) + "\n")
    # A key alone used to mean the real Mailchimp; now it is an error before any request.
    alone = invoke("batch", "submit", str(ops), env={"MAILCHIMP_API_KEY": "0" * 32 + "-us6"})
    assert alone.exit_code == 2
    assert "no target: give --url (or CONVEYOR_URL) for a Conveyor server, or --mailchimp" in (
        alone.stderr
    )
    both = invoke("batch", "submit", str(ops), "--mailchimp", env=live.env)
    assert both.exit_code == 2 and "name two targets" in both.stderr
    no_key = invoke("batch", "list", "--url", live.server.base_url)
    assert no_key.exit_code == 2 and "no API key: give --api-key or set MAILCHIMP_API_KEY" in (
        no_key.stderr
    )


def test_commands_that_write_name_their_target_and_reads_do_not(live: Live, tmp_path: Path) -> None:
    ops = tmp_path / "ops.jsonl"
    ops.write_text(json.dumps(PING) + "\n")
    submitted = invoke("batch", "submit", str(ops), "--wait", env=live.env)
    assert submitted.exit_code == 0, submitted.output
    assert submitted.stderr.startswith(f"target: {host_of(live)} (Conveyor server)\n")
    # "1 operation", not "1 operations".
    assert "1 operation\n" in submitted.stderr
    assert not re.search(r"(?<![/\d])1 operations", submitted.stderr), submitted.stderr
    assert "finished: 1 operation, 1 succeeded, 0 errored" in submitted.stderr
    listed = invoke("batch", "list", env=live.env)
    assert "target:" not in listed.stderr


def test_stdin_and_unknown_extensions_are_read_by_their_content(live: Live, tmp_path: Path) -> None:
    document = json.dumps({"operations": [PING, {**PING, "operation_id": "q"}]}, indent=2)
    piped = invoke("batch", "submit", "-", env=live.env, input=document)
    assert piped.exit_code == 0, piped.output
    assert "2 operations" in piped.stderr
    array = invoke("batch", "submit", "-", env=live.env, input=json.dumps([PING]))
    assert array.exit_code == 0 and "1 operation" in array.stderr
    one_line_document = invoke(
        "batch", "submit", "-", env=live.env, input=json.dumps({"operations": [PING, PING]})
    )
    assert "2 operations" in one_line_document.stderr
    lines = tmp_path / "ops.txt"
    lines.write_text("\n" + json.dumps(PING) + "\n" + json.dumps(PING) + "\n")
    as_text = invoke("batch", "submit", str(lines), env=live.env)
    assert as_text.exit_code == 0, as_text.output
    assert "2 operations" in as_text.stderr
    broken = tmp_path / "broken.txt"
    broken.write_text(json.dumps(PING) + "\n{oops\n")
    refused = invoke("batch", "submit", str(broken), env=live.env)
    assert refused.exit_code == 2 and "line 2 is not valid JSON" in refused.stderr


def test_a_validation_error_prints_its_text_once(live: Live) -> None:
    refused = invoke("webhooks", "add", "http://169.254.169.254/latest", env=live.env)
    assert refused.exit_code == 1
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: Invalid Resource: ")
    sentence = "169.254.169.254 is in 169.254.169.254/32"
    assert error.count(sentence) == 1, error


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_import_checks_the_list_and_the_file_first(live: Live, tmp_path: Path) -> None:
    good = write_csv(tmp_path / "m.csv", "email,FNAME\nann@example.org,Ann\n")
    missing = invoke("members", "import", str(good), "--list", "0000000000", env=live.env)
    assert missing.exit_code == 1
    assert (
        f"Error: there is no audience (list) '0000000000' on {host_of(live)} (Conveyor server)"
        in missing.stderr
    )
    assert missing.stdout == ""
    header_only = write_csv(tmp_path / "h.csv", "email,FNAME\n")
    empty = invoke("members", "import", str(header_only), "--list", live.list_id, env=live.env)
    assert empty.exit_code == 1 and "has a header but no rows: nothing to import" in empty.stderr
    semicolons = write_csv(tmp_path / "s.csv", "email;FNAME\nann@example.org;Ann\n")
    wrong = invoke("members", "import", str(semicolons), "--list", live.list_id, env=live.env)
    assert wrong.exit_code == 1 and "try --delimiter ';'" in wrong.stderr
    right = invoke("members", "import", str(semicolons), "--list", live.list_id,
                   "--delimiter", ";", "--wait", env=live.env)  # fmt: skip
    assert right.exit_code == 0, right.output


def test_import_reads_mailchimps_own_export_and_fails_when_rows_fail(
    live: Live, tmp_path: Path
) -> None:
    list_id = live.new_list()
    export = write_csv(
        tmp_path / "export.csv",
        "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME\n"
        "zed@example.org,Zed,Zulu,2,2024-01-01\n",
    )
    done = invoke("members", "import", str(export), "--list", list_id, "--wait", "--json",
                  env=live.env)  # fmt: skip
    assert done.exit_code == 0, done.output
    assert (
        "ignoring columns that match no merge field of the list: MEMBER_RATING, OPTIN_TIME"
        in done.stderr
    )
    summary = orjson.loads(done.stdout)
    assert (summary["rows"], summary["imported"], summary["failed"]) == (1, 1, 0)
    member = live.client.request("GET", f"lists/{list_id}/members/zed@example.org")
    assert member["merge_fields"]["FNAME"] == "Zed" and member["merge_fields"]["LNAME"] == "Zulu"

    bad = write_csv(tmp_path / "bad.csv", "email\nok@example.org\nnot-an-address\n")
    failed = invoke("members", "import", str(bad), "--list", list_id, "--wait", env=live.env)
    assert failed.exit_code == 1
    assert failed.stderr.rstrip().endswith(
        f"Error: 1 row did not go in; see {tmp_path / 'bad.results.csv'}"
    )
    with (tmp_path / "bad.results.csv").open(newline="") as written:
        rows = list(csv.DictReader(written))
    assert [row["status_code"] for row in rows] == ["200", "400"]


def test_lists_create_list_show(live: Live) -> None:
    incomplete = invoke("lists", "create", "Partners", env=live.env)
    assert incomplete.exit_code == 2
    assert "a new list needs --company, --address1, --city, --from-email" in incomplete.stderr
    created = invoke(
        "lists", "create", "Partners", "--company", "Acme", "--address1", "1 Main St",
        "--city", "Springfield", "--from-email", "news@acme.org", env=live.env,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    list_id = created.stdout.strip()
    assert f"target: {host_of(live)}" in created.stderr
    assert f"created list {list_id} (Partners)" in created.stderr
    listed = invoke("lists", "list", env=live.env)
    assert list_id in listed.stdout and "Partners" in listed.stdout
    as_json = [orjson.loads(line) for line in invoke("lists", "list", "--json",
                                                     env=live.env).stdout.splitlines()]  # fmt: skip
    assert {"id": list_id, "name": "Partners"}.items() <= next(
        item for item in as_json if item["id"] == list_id
    ).items()
    shown = invoke("lists", "show", list_id, env=live.env)
    assert shown.exit_code == 0 and "FNAME (First Name)" in shown.stdout
    shown_json = orjson.loads(invoke("lists", "show", list_id, "--json", env=live.env).stdout)
    assert shown_json["contact"]["company"] == "Acme"
    assert shown_json["campaign_defaults"]["from_email"] == "news@acme.org"
    nowhere = invoke("lists", "show", "0000000000", env=live.env)
    assert nowhere.exit_code == 1 and "Resource Not Found" in nowhere.stderr


def test_webhook_deliveries_and_json_output(live: Live) -> None:
    with running_receiver() as receiver:
        added = invoke("webhooks", "add", receiver.url, "--json", env=live.env)
        assert added.exit_code == 0, added.output
        hook = orjson.loads(added.stdout)
        assert hook["secret"] and hook["url"] == receiver.url
        try:
            submitted = invoke("batch", "submit", "-", "--wait", "--json", env=live.env,
                               input=json.dumps([PING]))  # fmt: skip
            batch = orjson.loads(submitted.stdout)
            assert batch["status"] == "finished" and batch["total_operations"] == 1
            receiver.wait_for_posts(1, timeout=60)
            waited = orjson.loads(invoke("batch", "wait", batch["id"], "--json",
                                         env=live.env).stdout)  # fmt: skip
            assert waited["id"] == batch["id"]
            shown = invoke("webhooks", "deliveries", hook["id"], env=live.env)
            assert shown.exit_code == 0, shown.output
            assert batch["id"] in shown.stdout
            lines = invoke("webhooks", "deliveries", hook["id"], "--json", env=live.env)
            deliveries = [orjson.loads(line) for line in lines.stdout.splitlines()]
            mine = [d for d in deliveries if d["batch_id"] == batch["id"]]
            assert mine and mine[0]["state"] in ("delivering", "delivered")
        finally:
            invoke("webhooks", "rm", hook["id"], env=live.env)
