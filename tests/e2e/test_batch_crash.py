"""Crash safety of the Batch endpoint: SIGKILL a real `conveyor serve` again and again.

docs/architecture.md decision 2 promises exactly-once effects and exactly one result per operation
whatever moment the process dies at. These tests kill the server with SIGKILL (no cleanup
runs, as in an OOM kill or a power cut) at random moments, restart it on the same data dir,
and check what a client can see: the archive, the batch counters and the list's members;
for a mixed workload on the same members, that these equal what the same operations sent one
by one over HTTP to a second, fresh server give (docs/architecture.md decision 19).

The random moments come from a seeded generator; the seed is printed, and CONVEYOR_E2E_SEED
replays a failing run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import RecordProperty
from tests.e2e.batch_support import (
    Progress,
    api_client,
    create_list,
    download_archive,
    list_members,
    md5,
    operation_template,
    operations_body,
    read_status,
    wait_finished,
    wait_until,
)
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

MIN_KILLS = 5
# Enough operations that five kills land before the end however fast the engine runs: each
# kill and restart lets it run on for a while (2026-11-29: ~4,000-5,000 operations between
# kills at ~16,000 operations/s, and 20,000 operations were then too few for five).
TOTAL_OPERATIONS = 40_000


def seeded_random() -> random.Random:
    seed = int(os.environ.get("CONVEYOR_E2E_SEED") or random.SystemRandom().randrange(2**32))
    print(f"random seed: {seed} (replay with CONVEYOR_E2E_SEED={seed})")
    return random.Random(seed)


@dataclass(frozen=True)
class Expected:
    kind: str
    email: str
    status_code: int
    title: str | None = None  # the problem title, for the failures


def crash_operations(
    list_id: str, old: list[str], rng: random.Random
) -> tuple[list[dict[str, Any]], dict[str, Expected]]:
    """`TOTAL_OPERATIONS` operations whose outcomes do not depend on the order they run in.

    Operations may run in any order (and here, in parallel chunks), so a PATCH or PUT only
    touches addresses that were on the list before the batch, and the new addresses of the
    POSTs and of the upserting PUTs are disjoint.
    """
    members = f"lists/{list_id}/members"
    planned: list[tuple[str, str, str, Any, Expected]] = []
    body: Any

    def plan(kind: str, method: str, path: str, body: Any, expected: Expected) -> None:
        planned.append((kind, method, path, body, expected))

    for k in range(TOTAL_OPERATIONS - 7_500):
        email = f"new{k}@example.org"
        body = {"email_address": email, "status": "subscribed"}
        plan("post_new", "POST", members, body, Expected("post_new", email, 200))
    for k in range(1_500):
        email = f"upsert{k}@example.org"
        body = {"email_address": email, "status_if_new": "subscribed"}
        plan("put_new", "PUT", f"{members}/{md5(email)}", body, Expected("put_new", email, 200))
    for email in old[:1_000]:
        body = {
            "email_address": email,
            "status_if_new": "subscribed",
            "merge_fields": {"FNAME": "Put"},
        }
        plan("put_old", "PUT", f"{members}/{md5(email)}", body, Expected("put_old", email, 200))
    for email in old[1_000:4_000]:
        body = {"merge_fields": {"LNAME": "Patched"}}
        plan(
            "patch_old", "PATCH", f"{members}/{md5(email)}", body, Expected("patch_old", email, 200)
        )
    for email in old[:500]:
        body = {"email_address": email, "status": "subscribed"}
        expected = Expected("post_old", email, 400, "Member Exists")
        plan("post_old", "POST", members, body, expected)
    for k in range(500):
        email = f"invalid{k}.example.org"
        body = {"email_address": email, "status": "subscribed"}
        expected = Expected("post_invalid", email, 400, "Invalid Resource")
        plan("post_invalid", "POST", members, body, expected)
    for k in range(500):
        email = f"missing{k}@example.org"
        expected = Expected("patch_missing", email, 404, "Resource Not Found")
        plan("patch_missing", "PATCH", f"{members}/{md5(email)}", {"vip": True}, expected)
    for k in range(500):
        email = f"unparsed{k}@example.org"
        body = '{"email_address": "' + email + '", '  # cut short: not JSON
        expected = Expected("bad_json", email, 400, "JSON Parse Exception")
        plan("bad_json", "POST", members, body, expected)
    assert len(planned) == TOTAL_OPERATIONS
    rng.shuffle(planned)

    operations: list[dict[str, Any]] = []
    expected_by_id: dict[str, Expected] = {}
    for seq, (kind, method, path, body, expected) in enumerate(planned):
        operation_id = f"{kind}-{seq}"
        text = body if isinstance(body, str) else json.dumps(body)
        operations.append(
            {"method": method, "path": path, "operation_id": operation_id, "body": text}
        )
        expected_by_id[operation_id] = expected
    return operations, expected_by_id


def add_old_members(api: httpx.Client, list_id: str, count: int) -> list[str]:
    """Put `count` members on the list before the batch, with the direct batch-subscribe."""
    emails = [f"old{k}@example.org" for k in range(count)]
    for start in range(0, count, 500):
        members = [
            {"email_address": e, "status": "subscribed"} for e in emails[start : start + 500]
        ]
        response = api.post(f"lists/{list_id}", json={"members": members})
        assert response.status_code == 200, response.text
        assert response.json()["total_created"] == len(members)
    return emails


def test_sigkill_during_a_batch_loses_and_repeats_nothing(
    server: ServerProcess, record_property: RecordProperty
) -> None:
    rng = seeded_random()
    api = api_client(server)
    list_id = create_list(api)
    old = add_old_members(api, list_id, 4_000)
    operations, expected = crash_operations(list_id, old, rng)
    body = json.dumps({"operations": operations})

    started = time.monotonic()
    submitted = api.post("batches", content=body, headers={"Content-Type": "application/json"})
    assert submitted.status_code == 200, submitted.text
    batch_id = submitted.json()["id"]
    progress = Progress(batch_id)
    progress.add(submitted.json())

    # Kill at random moments spread over the run: wait until the batch has passed a random
    # number of finished operations, then a random fraction of a second more, so kills land
    # anywhere within a group, not only at its commit. The last target is the end of
    # execution, so that one kill tends to land in `finalizing`. Rising targets guarantee
    # progress between kills however slow the machine is. The status read just before each
    # kill tells where it landed; only kills of an unfinished batch count. One random target
    # in each fifth of the first 20,000 operations: targets drawn anywhere could bunch near
    # the end, where the runs on after each restart finished the batch before the fifth kill.
    spread = 20_000 // MIN_KILLS
    targets = [
        *(500 + i * spread + rng.randrange(spread) for i in range(MIN_KILLS)),
        TOTAL_OPERATIONS,
    ]
    kills: list[tuple[float, str, int]] = []
    for target in targets:

        def passed(batch: dict[str, Any], target: int = target) -> bool:
            return bool(batch["finished_operations"] >= target)

        reached = wait_until(
            lambda: progress.add(read_status(api, batch_id)),
            passed,
            timeout=120,
        )
        if reached["status"] == "finished":
            break
        time.sleep(rng.uniform(0.0, 0.3))
        batch = progress.add(read_status(api, batch_id))
        if batch["status"] == "finished":
            break
        server.kill()
        kills.append(
            (round(time.monotonic() - started, 1), batch["status"], batch["finished_operations"])
        )
        server.restart()
    final = wait_finished(lambda: read_status(api, batch_id), timeout=120, progress=progress)
    elapsed = time.monotonic() - started
    print(f"{len(kills)} SIGKILLs at (seconds, status, finished_operations): {kills}")
    print(f"{TOTAL_OPERATIONS:,} operations finished in {elapsed:.1f} s including restarts")
    record_property("crash_kills", len(kills))
    record_property("crash_seconds", round(elapsed, 1))
    assert len(kills) >= MIN_KILLS, "the batch finished before enough kills landed"
    entries = download_archive(final)

    # Exactly one result per operation.
    counts = Counter(entry.operation_id for entry in entries)
    assert len(entries) == TOTAL_OPERATIONS
    assert set(counts) == set(expected)
    assert max(counts.values()) == 1

    # Every result is the one its operation must give, whatever order they ran in.
    wrong = [
        (entry.operation_id, entry.status_code, entry.title)
        for entry in entries
        if entry.operation_id is not None
        and (entry.status_code, entry.title if entry.status_code >= 300 else None)
        != (expected[entry.operation_id].status_code, expected[entry.operation_id].title)
    ]
    assert not wrong, f"{len(wrong)} unexpected results, e.g. {wrong[:5]}"
    # In particular: no Member Exists for an address that was new before the batch (a
    # group that ran twice would say exactly that).
    old_set = set(old)
    by_id = {entry.operation_id: entry for entry in entries}
    exists = [e for e in entries if e.title == "Member Exists"]
    assert len(exists) == 500
    for entry in exists:
        assert entry.operation_id is not None
        assert expected[entry.operation_id].email in old_set

    # The counters equal the archive's contents.
    errored = sum(1 for entry in entries if not 200 <= entry.status_code < 300)
    assert final["total_operations"] == final["finished_operations"] == len(entries)
    assert final["errored_operations"] == errored == 2_000

    # Each good POST's member exists exactly once, and is the member its result describes.
    members = list_members(api, list_id)
    emails = Counter(member["email_address"] for member in members)
    assert max(emails.values()) == 1
    new_posts = {e.email: oid for oid, e in expected.items() if e.kind == "post_new"}
    upserts = {e.email for e in expected.values() if e.kind == "put_new"}
    assert set(emails) == old_set | set(new_posts) | upserts
    web_ids = {member["email_address"]: member["web_id"] for member in members}
    for email, operation_id in new_posts.items():
        assert by_id[operation_id].body["web_id"] == web_ids[email], email
    # The updates took effect too.
    lnames = {m["email_address"]: m["merge_fields"]["LNAME"] for m in members}
    fnames = {m["email_address"]: m["merge_fields"]["FNAME"] for m in members}
    assert all(lnames[email] == "Patched" for email in old[1_000:4_000])
    assert all(fnames[email] == "Put" for email in old[:1_000])
    api.close()


# -- a crash while the body is still arriving --------------------------------------------


INGEST_OPERATIONS = 200_000
INGEST_SLICE = 2_000  # operations per streamed piece


def stored_rows(server: ServerProcess) -> tuple[int, int, int]:
    """(operation rows, result rows, batch rows) in the server's SQLite database.

    The one place these tests look inside (read beside the running server): rows of a cut
    upload or of a deleted batch are invisible to every client request, and a crash must not
    leave them behind for good.
    """
    database = sqlite3.connect(f"file:{server.data_dir / 'conveyor.db'}?mode=ro", uri=True)
    try:
        counts = [
            database.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("batch_operations", "batch_results", "batches")
        ]
    finally:
        database.close()
    return int(counts[0]), int(counts[1]), int(counts[2])


def wait_for_stored_operations(server: ServerProcess, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while (stored := stored_rows(server)[0]) == 0:
        assert time.monotonic() < deadline, "the server stored no page of the upload"
        time.sleep(0.01)
    return stored


def test_sigkill_during_ingest_leaves_no_partial_batch(server: ServerProcess) -> None:
    rng = seeded_random()
    api = api_client(server)
    list_id = create_list(api)
    template = operation_template(
        {
            "method": "POST",
            "path": f"lists/{list_id}/members",
            "operation_id": "ingest-IDX",
            "body": json.dumps({"email_address": "ingestIDX@example.org", "status": "subscribed"}),
        }
    )
    kill_at = rng.randrange(10, INGEST_OPERATIONS // INGEST_SLICE - 10) * INGEST_SLICE
    stored_at_kill = 0

    def slow_body() -> Iterator[bytes]:
        nonlocal stored_at_kill
        yield b'{"operations":['
        for first in range(0, INGEST_OPERATIONS, INGEST_SLICE):
            items = ",".join([template % {"i": i} for i in range(first, first + INGEST_SLICE)])
            yield (items if first == 0 else "," + items).encode()
            if first == kill_at:
                # Kill only once pages are stored, so the crash leaves a partial batch behind
                # for the restart to deal with (on a slow machine the server lags the sender).
                stored_at_kill = wait_for_stored_operations(server)
                # ... and the half-stored batch is invisible to clients meanwhile.
                with api_client(server) as observer:
                    assert observer.get("batches").json()["total_items"] == 0
                server.kill()
            time.sleep(0.005)  # slow enough that the server keeps up and stores as it goes
        yield b"]}"

    with pytest.raises(httpx.TransportError):
        api.post("batches", content=slow_body(), headers={"Content-Type": "application/json"})
    sent = kill_at + INGEST_SLICE
    print(
        f"killed with {stored_at_kill:,} operations stored, {sent:,} of {INGEST_OPERATIONS:,} sent"
    )
    assert 0 < stored_at_kill < INGEST_OPERATIONS
    server.restart()

    # The batch either does not exist or is whole; a body cut short cannot be whole.
    listed = api.get("batches", params={"count": 1000}).json()
    assert all(b["total_operations"] == INGEST_OPERATIONS for b in listed["batches"]), listed
    assert listed["total_items"] == 0
    # Nor is anything of it left behind in the database (read beside the running server).
    assert stored_rows(server) == (0, 0, 0)
    # No operation of the cut body ran, and the server takes and runs new batches.
    assert api.get(f"lists/{list_id}").json()["stats"]["member_count"] == 0
    small = {"operations": [{"method": "GET", "path": "ping", "operation_id": "after"}]}
    batch_id = api.post("batches", json=small).json()["id"]
    done = wait_finished(lambda: read_status(api, batch_id), timeout=30)
    assert (done["finished_operations"], done["errored_operations"]) == (1, 0)
    api.close()


def test_sigkill_during_delete_leaves_no_rows_behind(server: ServerProcess) -> None:
    """DELETE hides the batch, drops its rows in pages, and removes the batch row last; a
    crash in between must not strand the rows: the restarted server finishes the delete."""
    api = api_client(server)
    template = operation_template({"method": "GET", "path": "ping", "operation_id": "p-IDX"})
    body = operations_body(template, INGEST_OPERATIONS)
    submitted = api.post("batches", content=body, headers={"Content-Type": "application/json"})
    assert submitted.status_code == 200, submitted.text
    batch_id = submitted.json()["id"]
    wait_until(
        lambda: read_status(api, batch_id), lambda b: b["finished_operations"] > 0, timeout=60
    )

    deleting = threading.Thread(target=delete_quietly, args=(server, batch_id), daemon=True)
    deleting.start()
    # Kill once its operation rows are partly dropped (the batch row, marked, is still there).
    deadline = time.monotonic() + 30
    while True:
        operations, results, batches = stored_rows(server)
        if 0 < operations < INGEST_OPERATIONS:
            assert batches == 1
            break
        assert operations > 0, "the delete finished before the kill; nothing was tested"
        assert time.monotonic() < deadline, "the delete did not start"
        time.sleep(0.002)
    server.kill()
    deleting.join(timeout=10)
    print(f"killed mid-delete with {operations:,} operation and {results:,} result rows left")
    server.restart()

    assert api.get(f"batches/{batch_id}").status_code == 404
    assert api.get("batches").json()["total_items"] == 0
    assert stored_rows(server) == (0, 0, 0)
    api.close()


def delete_quietly(server: ServerProcess, batch_id: str) -> None:
    """DELETE the batch; the server is killed under it, so no answer is expected."""
    with api_client(server) as api, contextlib.suppress(httpx.TransportError):
        api.delete(f"batches/{batch_id}")


# -- a mixed workload on the same members, against the same operations sent one by one ----

MIXED_BLOCKS = 30
MIXED_MEMBERS_PER_BLOCK = 10
MIXED_OPERATIONS_PER_MEMBER = 10
MIXED_KILLS = 3


def mixed_operations(list_id: str, rng: random.Random) -> list[dict[str, Any]]:
    """Adds, repeated adds, upserts, patches, archives, re-adds and tags on the same members.

    Their outcomes depend on the order each member's operations run in (a second add is
    Member Exists, a patch of an archived member fails, a re-add revives it), which Conveyor
    keeps (docs/architecture.md decision 19). Each block of members has its operations
    interleaved, and blocks follow one another, so the batch still cuts into several chunks.
    """
    members = f"lists/{list_id}/members"
    operations: list[dict[str, Any]] = []
    for block in range(MIXED_BLOCKS):
        queues: list[list[tuple[str, str, Any]]] = []
        for index in range(MIXED_MEMBERS_PER_BLOCK):
            email = f"mixed{block}-{index}@example.org"
            path = f"{members}/{md5(email)}"
            steps: list[tuple[str, str, Any]] = []
            for _ in range(MIXED_OPERATIONS_PER_MEMBER):
                kind = rng.choice(("add", "add", "upsert", "patch", "archive", "tag"))
                status = rng.choice(("subscribed", "unsubscribed", "pending"))
                name = rng.choice(("Ann", "Bob", "Cy"))
                if kind == "add":
                    steps.append(("POST", members, {"email_address": email, "status": status}))
                elif kind == "upsert":
                    body = {
                        "email_address": email,
                        "status_if_new": status,
                        "merge_fields": {"FNAME": name},
                    }
                    steps.append(("PUT", path, body))
                elif kind == "patch":
                    steps.append(
                        ("PATCH", path, {"status": status, "merge_fields": {"LNAME": name}})
                    )
                elif kind == "archive":
                    steps.append(("DELETE", path, None))
                else:
                    tags = [{"name": name, "status": rng.choice(("active", "inactive"))}]
                    steps.append(("POST", f"{path}/tags", {"tags": tags}))
            queues.append(steps)
        # A random interleaving that keeps each member's own order.
        while any(queues):
            queue = rng.choice([queue for queue in queues if queue])
            method, path, body = queue.pop(0)
            seq = len(operations)
            operation: dict[str, Any] = {
                "method": method,
                "path": path,
                "operation_id": f"mixed-{seq}",
            }
            if body is not None:
                operation["body"] = json.dumps(body)
            operations.append(operation)
    return operations


def comparable(status_code: int, response: Any) -> tuple[Any, ...]:
    """What two servers must agree on: ids, timestamps and request ids aside."""
    if not isinstance(response, dict):
        return (status_code, response)
    if status_code >= 300:
        return (status_code, response.get("title"), response.get("detail"))
    tags = sorted(tag["name"] for tag in response.get("tags", []))
    return (
        status_code,
        response.get("email_address"),
        response.get("status"),
        response.get("merge_fields"),
        tags,
    )


def member_states(api: httpx.Client, list_id: str, emails: list[str]) -> dict[str, Any]:
    states = {}
    for email in emails:
        response = api.get(f"lists/{list_id}/members/{md5(email)}")
        body = response.json() if response.content else None
        states[email] = comparable(response.status_code, body)
    return states


def test_sigkill_during_a_mixed_batch_equals_the_operations_sent_one_by_one(
    start_server: Any, record_property: RecordProperty
) -> None:
    rng = seeded_random()
    # Small chunks and groups: several chunks run in parallel, and kills land inside groups.
    # Blocks are 100 operations: a plain cut every 150 would split every other block.
    env = {"CONVEYOR_BATCH_CHUNK_SIZE": "150", "CONVEYOR_BATCH_GROUP_SIZE": "15"}
    batched: ServerProcess = start_server(env=env)
    direct: ServerProcess = start_server()
    api, one_by_one = api_client(batched), api_client(direct)
    list_id, direct_list_id = create_list(api), create_list(one_by_one)
    operations = mixed_operations(list_id, rng)
    total = len(operations)

    submitted = api.post("batches", json={"operations": operations})
    assert submitted.status_code == 200, submitted.text
    batch_id = submitted.json()["id"]
    progress = Progress(batch_id)
    # Each kill waits for progress since the last restart (not for wall-clock time, which a
    # slow machine stretches), then a random fraction of a group's time more.
    kills: list[tuple[str, int]] = []
    since = 0
    for _ in range(MIXED_KILLS):

        def moved(batch: dict[str, Any], since: int = since) -> bool:
            return bool(batch["finished_operations"] > since)

        reached = wait_until(lambda: progress.add(read_status(api, batch_id)), moved, timeout=60)
        if reached["status"] == "finished":
            break
        time.sleep(rng.uniform(0.0, 0.05))
        batch = progress.add(read_status(api, batch_id))
        if batch["status"] == "finished":
            break
        batched.kill()
        kills.append((batch["status"], batch["finished_operations"]))
        batched.restart()
        since = progress.add(read_status(api, batch_id))["finished_operations"]
    final = wait_finished(lambda: read_status(api, batch_id), timeout=120, progress=progress)
    print(f"{len(kills)} SIGKILLs at (status, finished_operations): {kills}")
    record_property("mixed_crash_kills", len(kills))
    assert kills, "the batch finished before a kill landed"
    entries = download_archive(final)
    assert [entry.operation_id for entry in entries] == [op["operation_id"] for op in operations]
    assert final["finished_operations"] == final["total_operations"] == total

    # The same operations, one request each, in order, on a fresh server.
    expected: list[tuple[Any, ...]] = []
    for operation in operations:
        path = operation["path"].replace(list_id, direct_list_id)
        response = one_by_one.request(
            operation["method"], path, content=operation.get("body", "").encode()
        )
        expected.append(
            comparable(response.status_code, response.json() if response.content else None)
        )
    got = [comparable(entry.status_code, entry.body) for entry in entries]
    differ = [(i, g, e) for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e]
    assert not differ, f"{len(differ)} results differ, e.g. {differ[:3]}"
    assert any(result[1] == "Member Exists" for result in got), "no repeated add was refused"

    emails = [
        f"mixed{block}-{index}@example.org"
        for block in range(MIXED_BLOCKS)
        for index in range(MIXED_MEMBERS_PER_BLOCK)
    ]
    assert member_states(api, list_id, emails) == member_states(one_by_one, direct_list_id, emails)
    api.close()
    one_by_one.close()
