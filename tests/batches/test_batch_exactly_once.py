"""Exactly-once execution: failed groups, competing claims, restarts."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from conveyor.composition import Services
from conveyor.domain import archive as archive_module
from conveyor.domain.archive import ResultRecord
from conveyor.domain.clock import SystemClock
from conveyor.domain.operations import Operation
from conveyor.domain.steps import FollowUp, Step
from conveyor.runtime.embedded import EmbeddedRuntime, embedded_runtime
from conveyor.storage.tables import batch_chunks, batches
from tests.batches.support import (
    NO_ROWS,
    assert_counters_match,
    batch_rows,
    claim,
    create_list,
    drive,
    fetch_archive,
    get_batch,
    list_members,
    member_posts,
    response_of,
    run_claimed_group,
    set_chunk_lease,
    submit,
)
from tests.conftest import ApiUser


def _assert_each_once(
    client: Any, batch_id: str, list_id: str, operations: list[dict[str, Any]]
) -> None:
    """One result per operation, every one a success, every member stored exactly once."""
    done = get_batch(client, batch_id)
    assert done["status"] == "finished"
    archive = fetch_archive(client, done)
    assert_counters_match(done, archive)
    ids = Counter(result["operation_id"] for result in archive.results)
    assert ids == Counter(op["operation_id"] for op in operations)
    # A re-run of an applied operation would say "Member Exists": none may.
    assert {result["status_code"] for result in archive.results} == {200}, [
        response_of(r) for r in archive.results if r["status_code"] != 200
    ][:3]
    emails = Counter(member["email_address"] for member in list_members(client, list_id))
    assert emails == Counter(f"user{i}@example.org" for i in range(len(operations)))


def test_a_failed_group_is_retried_without_double_effects(
    batch_api: ApiUser,
    runtime: EmbeddedRuntime,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second group's transaction dies at its last statement; the runtime retries it."""
    client = batch_api.client
    list_id = create_list(client)
    record_results = services.batch_store.record_results
    calls = {"n": 0}

    def crash_once(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            # Its operations' effects are already written in the open transaction.
            raise RuntimeError("simulated crash before commit")
        record_results(*args, **kwargs)

    monkeypatch.setattr(services.batch_store, "record_results", crash_once)
    operations = member_posts(list_id, 45)  # chunks of 20, 20, 5: groups 7+7+6, 7+7+6, 5
    batch = submit(client, operations)
    runtime.join()
    assert calls["n"] == 7 + 1  # every group once, and the one that failed again
    _assert_each_once(client, batch["id"], list_id, operations)


def test_a_failing_group_does_not_wait_for_its_lease(
    api: ApiUser, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a failed group the chunk can be claimed at once, not after `lease_seconds`."""
    client = api.client
    list_id = create_list(client)
    operations = member_posts(list_id, 10)
    batch = submit(client, operations)
    engine = services.engine
    assert engine.preprocess(batch["id"]) == [FollowUp(Step.WORK, batch["id"])]
    record_results = services.batch_store.record_results

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("simulated crash before commit")

    monkeypatch.setattr(services.batch_store, "record_results", crash)
    with pytest.raises(RuntimeError):
        engine.work(batch["id"])
    monkeypatch.setattr(services.batch_store, "record_results", record_results)
    # What the broker's retry runs: it finds the chunk claimable and finishes it.
    drive(services, batch["id"], first=[FollowUp(Step.WORK, batch["id"])])
    _assert_each_once(client, batch["id"], list_id, operations)


def test_two_claims_of_one_chunk_only_one_commits(api: ApiUser, services: Services) -> None:
    client = api.client
    list_id = create_list(client)
    operations = member_posts(list_id, 10)  # one chunk, two groups (7 + 3)
    batch = submit(client, operations)
    batch_id = batch["id"]
    services.engine.preprocess(batch_id)

    first = claim(services, batch_id)
    assert first is not None and (first.next_seq, first.stop_seq) == (0, 10)
    assert claim(services, batch_id) is None  # held: nobody else gets it
    # The first holder commits one group, then stalls past its lease.
    assert run_claimed_group(services, first, 0, 7)
    set_chunk_lease(services, batch_id, time.time() - 1)
    second = claim(services, batch_id)
    assert second is not None
    assert (second.seq, second.next_seq) == (first.seq, 7)  # resumes after the commit
    assert second.token != first.token

    # Both run the rest; the stale holder loses, whichever goes first.
    assert not run_claimed_group(services, first, 7, 10)
    assert run_claimed_group(services, second, 7, 10)
    assert not run_claimed_group(services, first, 7, 10)
    assert not run_claimed_group(services, second, 7, 10)  # its cursor moved on

    with services.database.read() as conn:
        chunk = conn.execute(batch_chunks.select().where(batch_chunks.c.batch_id == batch_id)).one()
    assert (chunk.state, chunk.next_seq, chunk.attempts) == ("done", 10, 2)
    drive(services, batch_id, first=[FollowUp(Step.WORK, batch_id)])
    _assert_each_once(client, batch_id, list_id, operations)


def test_a_stale_claim_cannot_commit_its_first_group(api: ApiUser, services: Services) -> None:
    client = api.client
    list_id = create_list(client)
    operations = member_posts(list_id, 10)
    batch = submit(client, operations)
    batch_id = batch["id"]
    services.engine.preprocess(batch_id)
    first = claim(services, batch_id)
    assert first is not None
    set_chunk_lease(services, batch_id, time.time() - 1)
    second = claim(services, batch_id)
    assert second is not None
    assert not run_claimed_group(services, first, 0, 7)
    assert run_claimed_group(services, second, 0, 7)
    assert run_claimed_group(services, second, 7, 10)
    drive(services, batch_id, first=[FollowUp(Step.WORK, batch_id)])
    _assert_each_once(client, batch_id, list_id, operations)


def test_a_deleted_batch_claim_cannot_commit(api: ApiUser, services: Services) -> None:
    client = api.client
    list_id = create_list(client)
    batch = submit(client, member_posts(list_id, 10))
    services.engine.preprocess(batch["id"])
    held = claim(services, batch["id"])
    assert held is not None
    assert client.delete(f"/3.0/batches/{batch['id']}").status_code == 204
    assert not run_claimed_group(services, held, 0, 7)
    assert list_members(client, list_id) == []
    assert batch_rows(services, batch["id"]) == NO_ROWS


# --- restart ---------------------------------------------------------------------------------


def test_restart_resumes_every_unfinished_batch(api: ApiUser, services: Services) -> None:
    """Batches left in each state by a dead process all finish, each operation once."""
    client = api.client
    list_id = create_list(client)
    engine = services.engine

    half_done_ops = member_posts(list_id, 50, prefix="user")
    half_done = submit(client, half_done_ops)["id"]  # 3 chunks: 20, 20, 10
    engine.preprocess(half_done)
    assert engine.work(half_done) == [FollowUp(Step.WORK, half_done)]  # chunk 0 done
    running = claim(services, half_done)  # chunk 1: one group committed, then the crash
    assert running is not None and running.seq == 1
    assert run_claimed_group(services, running, 20, 27)
    assert get_batch(client, half_done)["status"] == "started"

    pending_list = create_list(client)
    pending_ops = member_posts(pending_list, 5)
    pending = submit(client, pending_ops)["id"]

    finalizing_list = create_list(client)
    finalizing_ops = member_posts(finalizing_list, 5)
    finalizing = submit(client, finalizing_ops)["id"]
    engine.preprocess(finalizing)
    # It moves to finalizing; the FINALIZE message it asks for is lost.
    assert engine.work(finalizing) == [FollowUp(Step.FINALIZE, finalizing)]
    assert get_batch(client, finalizing)["status"] == "finalizing"

    # An upload that was cut off by the crash: rows exist, the batch never became visible.
    with services.database.write() as conn:
        owner = services.batch_store.get(conn, half_done)
        assert owner is not None
        partial = services.batch_store.create_ingesting(
            conn, owner.account_pk, "http://testserver/3.0"
        )
        services.batch_store.insert_operations(
            conn, partial, 0, [Operation("GET", "lists", {}, None, None)]
        )

    restarted = embedded_runtime(services)
    restarted.start()
    try:
        restarted.join()
    finally:
        restarted.stop()

    _assert_each_once(client, half_done, list_id, half_done_ops)
    _assert_each_once(client, pending, pending_list, pending_ops)
    _assert_each_once(client, finalizing, finalizing_list, finalizing_ops)
    assert batch_rows(services, partial) == NO_ROWS


# --- finalize ----------------------------------------------------------------------------------


def test_a_duplicate_finalize_keeps_the_archive(
    api: ApiUser, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two finalizers of one batch (the sweep re-sent a slow one's message): one archive,
    complete, still there after both are done."""
    client = api.client
    batch_id = submit(client, [{"method": "GET", "path": "lists", "operation_id": "x"}] * 30)["id"]
    engine = services.engine
    engine.preprocess(batch_id)
    while (follow_ups := engine.work(batch_id)) and follow_ups[0].step is Step.WORK:
        pass
    assert follow_ups == [FollowUp(Step.FINALIZE, batch_id)]

    started = threading.Event()
    go_on = threading.Event()
    write_archive = archive_module.write_archive

    def slow_first(*args: Any, **kwargs: Any) -> Any:
        if not started.is_set():
            started.set()
            assert go_on.wait(timeout=30)
        return write_archive(*args, **kwargs)

    # The engine's own name for it: a finalizer that is slow to write its archive.
    monkeypatch.setattr("conveyor.batches.engine.write_archive", slow_first)
    slow = threading.Thread(target=engine.finalize, args=(batch_id,))
    slow.start()
    try:
        assert started.wait(timeout=30)
        engine.finalize(batch_id)  # the duplicate overtakes it and finishes the batch
        assert get_batch(client, batch_id)["status"] == "finished"
    finally:
        go_on.set()
        slow.join(timeout=30)
    done = get_batch(client, batch_id)
    archive = fetch_archive(client, done)
    assert [r["operation_id"] for r in archive.results] == ["x"] * 30
    assert_counters_match(done, archive)


def test_a_long_finalize_keeps_the_sweep_away(
    api: ApiUser, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the archive is written the batch row moves, so the sweep does not take the
    finalizer for a lost message and start another beside it."""
    batch_id = submit(api.client, [{"method": "GET", "path": "lists"}])["id"]
    engine = services.engine
    engine.preprocess(batch_id)
    assert engine.work(batch_id) == [FollowUp(Step.FINALIZE, batch_id)]
    idle = services.settings.batches.sweep_idle_seconds
    with services.database.write() as conn:
        conn.execute(
            batches.update().where(batches.c.id == batch_id).values(updated_ts=time.time() - idle)
        )
    assert FollowUp(Step.FINALIZE, batch_id) in engine.sweep(idle_seconds=idle)

    class SlowWriting(SystemClock):
        """Every look at the interval clock, a long stretch of writing has passed."""

        def __init__(self) -> None:
            self.elapsed = 0.0

        def monotonic(self) -> float:
            self.elapsed += idle
            return self.elapsed

    monkeypatch.setattr(services.batch_store, "clock", SlowWriting())
    records = (ResultRecord(200, None, "{}") for _ in range(2_000))
    assert sum(1 for _ in engine._keep_alive(batch_id, records)) == 2_000
    assert engine.sweep(idle_seconds=idle) == []
