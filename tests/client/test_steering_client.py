"""The batch extensions from Python and from the CLI, against a live `conveyor serve`:
the operations view, NDJSON results, progress events, retry and cancel."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from conveyor.client import Client, ConveyorApiError, ExtensionUnavailable
from tests.client.conftest import Live
from tests.client.support import invoke
from tests.e2e.server import run_cli

pytestmark = pytest.mark.e2e

TOTAL = 300
INVALID_EVERY = 10  # 30 of the 300 addresses are refused


def _member_posts(list_id: str, total: int, *, prefix: str) -> Iterator[dict[str, object]]:
    for i in range(total):
        address = f"{prefix}-bad{i}" if i % INVALID_EVERY == 3 else f"{prefix}{i}@example.org"
        yield {
            "method": "POST",
            "path": f"lists/{list_id}/members",
            "operation_id": f"{prefix}-{i}",
            "body": json.dumps({"email_address": address, "status": "subscribed"}),
        }


@pytest.fixture(scope="module")
def finished_batch(live: Live) -> str:
    batch = live.client.submit(_member_posts(live.list_id, TOTAL, prefix="steer"))
    live.client.wait(batch.id, timeout=120)
    return batch.id


@pytest.fixture(scope="module")
def stranger_key(live: Live) -> str:
    """The key of another account on the same server."""
    made = run_cli("keys", "create", "--data-dir", str(live.server.data_dir))
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@pytest.fixture(scope="module")
def stranger(live: Live, stranger_key: str) -> Iterator[Client]:
    """A client of another account on the same server."""
    with Client(stranger_key, base_url=live.server.base_url) as client:
        yield client


def test_the_operations_view_pages_and_filters(live: Live, finished_batch: str) -> None:
    every = list(live.client.operations(finished_batch, page_size=70))
    assert [item.seq for item in every] == list(range(TOTAL))
    failed = list(live.client.operations(finished_batch, status="failed", page_size=7))
    assert [item.seq for item in failed] == list(range(3, TOTAL, INVALID_EVERY))
    assert {item.status_code for item in failed} == {400}
    assert all(item.error and item.error.startswith("Invalid Resource") for item in failed)
    (one,) = live.client.operations(finished_batch, operation_id="steer-5")
    assert (one.status, one.status_code, one.method) == ("succeeded", 200, "POST")
    assert isinstance(one.response, dict) and one.response["email_address"] == "steer5@example.org"
    assert list(live.client.operations(finished_batch, status="pending")) == []


def test_ndjson_results_equal_the_archive(live: Live, finished_batch: str) -> None:
    streamed = list(live.client.results_ndjson(finished_batch))
    with live.client.results(finished_batch) as archived:
        records = list(archived)
    assert [(r.operation_id, r.status_code) for r in streamed] == [
        (r.operation_id, r.status_code) for r in records
    ]
    assert [r.response for r in streamed] == [r.body for r in records]
    failures = list(live.client.results_ndjson(finished_batch, status="failed"))
    assert len(failures) == TOTAL // INVALID_EVERY and not any(r.ok for r in failures)


def test_retry_failed_makes_a_batch_of_the_failures(live: Live, finished_batch: str) -> None:
    retried = live.client.retry_failed(finished_batch)
    assert retried.id != finished_batch and retried.total_operations == TOTAL // INVALID_EVERY
    assert retried.raw["retry_of"] == finished_batch
    done = live.client.wait(retried.id, timeout=60)
    assert done.errored_operations == TOTAL // INVALID_EVERY
    # The same operations again, in order, under their own operation_ids.
    again = [item.operation_id for item in live.client.operations(retried.id)]
    assert again == [f"steer-{i}" for i in range(3, TOTAL, INVALID_EVERY)]
    narrowed = live.client.retry_failed(finished_batch, status_codes=[400, 429])
    assert narrowed.total_operations == TOTAL // INVALID_EVERY
    with pytest.raises(ConveyorApiError, match="no failed operations with status code 500"):
        live.client.retry_failed(finished_batch, status_codes=[500])


def test_watch_follows_a_batch_to_its_end(live: Live) -> None:
    list_id = live.new_list()
    batch = live.client.submit(_member_posts(list_id, 3_000, prefix="watch"))
    updates = list(live.client.watch(batch.id))
    assert updates[-1].event == "finished" and updates[-1].batch.done
    assert {u.event for u in updates[:-1]} <= {"progress"}
    counts = [u.batch.finished_operations for u in updates]
    assert counts == sorted(counts) and counts[-1] == 3_000
    # A finished batch's stream says so at once, and ends.
    (again,) = live.client.watch(batch.id)
    assert again.event == "finished"


def test_cancel_keeps_what_ran(live: Live) -> None:
    list_id = live.new_list()
    batch = live.client.submit(_member_posts(list_id, 20_000, prefix="cancel"))
    canceled = live.client.cancel(batch.id)
    assert canceled.raw.get("canceled_at")
    done = live.client.wait(batch.id, timeout=120)
    with live.client.results(batch.id) as results:
        assert sum(1 for _ in results) == done.finished_operations < 20_000
    pending = sum(1 for _ in live.client.operations(batch.id, status="pending"))
    assert pending == 20_000 - done.finished_operations


def _extension_calls(client: Client, batch_id: str) -> list[Callable[[], object]]:
    return [
        lambda: list(client.operations(batch_id)),
        lambda: list(client.results_ndjson(batch_id)),
        lambda: list(client.watch(batch_id)),
        lambda: client.retry_failed(batch_id),
        lambda: client.cancel(batch_id),
    ]


def test_another_account_and_unknown_batches_are_not_found(
    live: Live, finished_batch: str, stranger: Client
) -> None:
    for client, batch_id in ((stranger, finished_batch), (live.client, "0000000000")):
        for call in _extension_calls(client, batch_id):
            with pytest.raises(ConveyorApiError) as refused:
                call()
            assert refused.value.status == 404


def test_mailchimp_has_no_extensions() -> None:
    with Client("0" * 32 + "-us1") as client:
        assert client.is_mailchimp
        for call in _extension_calls(client, "x"):
            with pytest.raises(ExtensionUnavailable, match="Conveyor extension"):
                call()


def test_a_page_holds_at_most_a_thousand(live: Live, finished_batch: str) -> None:
    for size in (0, 1001):
        with pytest.raises(ValueError, match="page_size must be 1 to 1000"):
            next(live.client.operations(finished_batch, page_size=size))


# --- the commands ----------------------------------------------------------------------------


def test_batch_ops_lists_failures_and_json(live: Live, finished_batch: str) -> None:
    failed = invoke("batch", "ops", finished_batch, "--failed", env=live.env)
    assert failed.exit_code == 0, failed.output
    lines = failed.stdout.splitlines()
    assert len(lines) == TOTAL // INVALID_EVERY
    assert "failed" in lines[0] and "400" in lines[0] and "steer-3" in lines[0]
    assert "Invalid Resource" in lines[0]
    assert failed.stderr.strip() == f"{TOTAL // INVALID_EVERY} operations"
    as_json = invoke("batch", "ops", finished_batch, "--operation-id", "steer-4", "--json",
                     env=live.env)  # fmt: skip
    (item,) = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert item["seq"] == 4 and item["status"] == "succeeded"
    both = invoke("batch", "ops", finished_batch, "--failed", "--status", "pending", env=live.env)
    assert both.exit_code == 2 and "give one" in both.stderr


def test_batch_retry_watch_and_cancel_commands(live: Live, finished_batch: str) -> None:
    retried = invoke("batch", "retry", finished_batch, "--wait", env=live.env)
    assert retried.exit_code == 0, retried.output
    new_id = retried.stdout.strip()
    assert f"batch {new_id} retries {TOTAL // INVALID_EVERY} operations" in retried.stderr

    watched = invoke("batch", "watch", new_id, env=live.env)
    assert watched.exit_code == 0, watched.output
    # Off a terminal, the bar is a line per change; it ends with the batch's summary.
    assert f"batch {new_id}: finished, 30/30 operations finished, 30 errored" in watched.stderr
    assert watched.stderr.rstrip().endswith(
        f"batch {new_id} finished: 30 operations, 0 succeeded, 30 errored"
    )

    list_id = live.new_list()
    big = live.client.submit(_member_posts(list_id, 20_000, prefix="cli-cancel"))
    canceled = invoke("batch", "cancel", big.id, env=live.env)
    assert canceled.exit_code == 0, canceled.output
    assert f"canceled batch {big.id}" in canceled.stderr and "keep their results" in canceled.stderr
    on_mailchimp = invoke("batch", "cancel", big.id, "--mailchimp", "--api-key", "0" * 32 + "-us1")
    assert on_mailchimp.exit_code == 2 and "batch delete" in on_mailchimp.stderr


def test_batch_ops_shows_what_is_pending_and_retry_json(live: Live, finished_batch: str) -> None:
    list_id = live.new_list()
    big = live.client.submit(_member_posts(list_id, 20_000, prefix="pending"))
    live.client.cancel(big.id)
    done = live.client.wait(big.id, timeout=120)
    pending = invoke("batch", "ops", big.id, "--status", "pending", env=live.env)
    assert pending.exit_code == 0, pending.output
    lines = pending.stdout.splitlines()
    assert len(lines) == 20_000 - done.finished_operations
    # A pending operation has no status code yet: "-" stands in its column.
    seq, status, code, operation_id = lines[0].split()[:4]
    assert (status, code, operation_id) == ("pending", "-", f"pending-{seq}")

    narrowed = invoke(
        "batch", "retry", finished_batch, "--status-code", "400", "--json", env=live.env
    )
    assert narrowed.exit_code == 0, narrowed.output
    retried = json.loads(narrowed.stdout)
    assert retried["retry_of"] == finished_batch
    assert retried["total_operations"] == TOTAL // INVALID_EVERY
    # Writes say where they went before anything else.
    assert narrowed.stderr.startswith(f"target: {live.server.base_url.split('//')[1]}")
    nothing = invoke("batch", "retry", finished_batch, "--status-code", "503", env=live.env)
    assert nothing.exit_code == 1
    assert nothing.stderr.splitlines()[-1].startswith("Error: ")
    assert "no failed operations with status code 503" in nothing.stderr


def _commands(batch_id: str) -> list[list[str]]:
    return [
        ["batch", "ops", batch_id],
        ["batch", "ops", batch_id, "--failed", "--json"],
        ["batch", "retry", batch_id],
        ["batch", "cancel", batch_id],
        ["batch", "watch", batch_id],
    ]


def test_commands_on_another_accounts_or_an_unknown_batch_say_not_found(
    live: Live, finished_batch: str, stranger_key: str
) -> None:
    theirs = {**live.env, "MAILCHIMP_API_KEY": stranger_key}
    for env, batch_id in ((theirs, finished_batch), (live.env, "0000000000")):
        for command in _commands(batch_id):
            refused = invoke(*command, env=env)
            assert refused.exit_code == 1, (command, refused.output)
            assert refused.stdout == ""
            (error,) = [line for line in refused.stderr.splitlines() if line.startswith("Error")]
            assert error.startswith("Error: Resource Not Found"), (command, refused.stderr)
            assert "Traceback" not in refused.stderr
    # The stranger saw nothing and changed nothing.
    assert live.client.get(finished_batch).raw.get("canceled_at") in (None, "")


def test_commands_on_mailchimp_say_it_has_no_such_endpoint() -> None:
    mailchimp = ["--mailchimp", "--api-key", "0" * 32 + "-us1"]
    for command in _commands("1234567890"):
        refused = invoke(*command, *mailchimp)
        assert refused.exit_code == 2, (command, refused.output)
        errors = [line for line in refused.stderr.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and "Usage" not in refused.stderr, refused.stderr
        assert "Conveyor extension" in errors[0] or "batch delete" in errors[0]
