"""The batch extensions from Python and from the CLI, against a live `conveyor serve`:
the operations view, NDJSON results, progress events, retry and cancel."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from conveyor.client import Client, ConfigurationError, ConveyorApiError
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
def stranger(live: Live) -> Iterator[Client]:
    """A client of another account on the same server."""
    made = run_cli("keys", "create", "--data-dir", str(live.server.data_dir))
    assert made.returncode == 0, made.stderr
    with Client(made.stdout.strip(), base_url=live.server.base_url) as client:
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
    done = live.client.wait(retried.id, timeout=60)
    assert done.errored_operations == TOTAL // INVALID_EVERY
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
            with pytest.raises(ConfigurationError, match="Conveyor extension"):
                call()


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
