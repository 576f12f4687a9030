"""The Python client against a live `conveyor serve`: submit, wait, typed results."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from conveyor.client import Batch, BatchProgress, ConveyorApiError, WaitTimeout
from conveyor.client import operations as ops
from tests.client.conftest import Live

pytestmark = pytest.mark.e2e


def test_submit_wait_results_with_every_builder(live: Live) -> None:
    list_id = live.new_list()
    client = live.client
    # The first batch creates the members the second one works on (a batch runs in any order).
    first = client.submit(
        [
            ops.add_member(list_id, "ann@example.org", merge_fields={"FNAME": "Ann"}),
            ops.upsert_member(list_id, "bob@example.org", operation_id="bob"),
            ops.upsert_member(list_id, "cy@example.org", operation_id="cy"),
            ops.add_member(list_id, "not-an-email", operation_id="bad"),
        ]
    )
    assert isinstance(first, Batch) and first.status == "pending" and first.total_operations == 4
    seen: list[Batch] = []
    done = client.wait(first.id, timeout=60, progress=seen.append)
    assert done.done and done.errored_operations == 1 and done.response_body_url
    assert seen[-1] == done

    with client.results(first.id) as results:
        by_id = {result.operation_id: result for result in results}
    assert by_id["ann@example.org"].ok and by_id["ann@example.org"].status_code == 200
    assert by_id["ann@example.org"].body["merge_fields"]["FNAME"] == "Ann"
    assert isinstance(by_id["bob"].body["web_id"], int)
    bad = by_id["bad"]
    assert (bad.ok, bad.status_code, bad.title) == (False, 400, "Invalid Resource")
    assert bad.detail == "not-an-email looks fake or invalid, please enter a real email address."
    assert json.loads(bad.response) == bad.body
    assert [r.operation_id for r in client.failed(first.id)] == ["bad"]

    second = client.submit(
        [
            ops.update_member(list_id, "ann@example.org", merge_fields={"LNAME": "Lee"}),
            ops.tag_member(list_id, "bob@example.org", add=["vip"], operation_id="tag"),
            ops.archive_member(list_id, "cy@example.org", operation_id="archive"),
            ops.get_page(f"/lists/{list_id}/members", count=1, fields=["members.email_address"]),
            {"method": "GET", "path": "/ping"},  # no operation id: null in the archive
        ]
    )
    client.wait(second.id, timeout=60)
    second_results = {r.operation_id: r for r in client.results(second.id)}
    assert second_results["ann@example.org"].body["merge_fields"]["LNAME"] == "Lee"
    # Tagging and archiving answer 204 with an empty body: decoded as None, still ok.
    for empty in ("tag", "archive"):
        outcome = second_results[empty]
        assert (outcome.status_code, outcome.body, outcome.ok) == (204, None, True)
    page = second_results[f"GET /lists/{list_id}/members 0"].body
    assert list(page["members"][0]) == ["email_address"]
    assert second_results[None].body == {"health_status": "Everything's Chimpy!"}

    listed = {batch.id for batch in client.iter_batches(page_size=1)}
    assert {first.id, second.id} <= listed


def test_wait_timeout_and_a_rich_bar_on_a_terminal(live: Live) -> None:
    client = live.client
    batch = client.submit(
        ops.upsert_member(live.new_list(), f"t{i}@example.org", operation_id=str(i))
        for i in range(2000)
    )
    with pytest.raises(WaitTimeout) as caught:
        client.wait(batch.id, timeout=0)
    assert caught.value.batch.id == batch.id

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=150, color_system=None)
    with BatchProgress(console) as progress:
        finished = client.wait(batch.id, timeout=120, progress=progress)
    shown = screen.getvalue()
    assert finished.done
    assert f"batch {batch.id} finished" in shown
    assert "2000/2000" in shown and "0 errored" in shown


def test_the_problem_document_of_a_refused_batch(live: Live) -> None:
    with pytest.raises(ConveyorApiError) as caught:
        live.client.request("POST", "batches", json={"operations": "nope"})
    error = caught.value
    assert error.status == 400
    assert error.title and error.detail and error.instance
    assert error.document["status"] == 400
