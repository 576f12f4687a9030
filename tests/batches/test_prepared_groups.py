"""Groups prepared outside the writer answer and write what the writer alone would.

docs/architecture.md decision 21: a group of runs is answered on a snapshot (in a helper
process in production) and written by the writer only if everything it was decided from is
unchanged; otherwise the writer runs it again itself. The property below lets other writes
land between the two, so both outcomes are exercised.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from typing import Any

import orjson
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection

from conveyor.batches.prepared import (
    PreparedGroup,
    apply_prepared_group,
    prepare_run,
    with_web_ids,
)
from conveyor.batches.runs import HeldMember, Run, execute_run, plan_runs, run_candidate
from conveyor.composition import Services
from conveyor.domain.accounts import Account
from conveyor.runtime.group_helpers import GroupHelpers
from tests.batches.support import drive, fetch_archive, response_of, submit
from tests.batches.test_set_wise_runs import (
    ROOT,
    in_rolled_back,
    member_operation,
    member_path,
    normalise,
    one_at_a_time,
    seed_list,
    seeded,
)
from tests.conftest import ApiUser

__all__ = ["seeded"]  # the fixture, shared with the set-wise suite

Operations = list[tuple[str, str, str | None]]


def _prepared_then_applied(
    services: Services,
    account: Account,
    meanwhile: Operations,
    operations: Operations,
    seen: dict[str, int],
) -> Callable[[Connection], list[tuple[int, str]]]:
    """The run prepared on a snapshot; `meanwhile` written by another writer after that; then
    the run applied, or run again by the writer when what it read has changed."""
    routes = services.routes

    def work(conn: Connection) -> list[tuple[int, str]]:
        candidates = [
            run_candidate(routes, i, method, path, {}, body)
            for i, (method, path, body) in enumerate(operations)
        ]
        (run,) = plan_runs(candidates)
        assert isinstance(run, Run)
        with services.database.snapshot() as snapshot:
            prepared = prepare_run(snapshot, routes, account, run, api_root=ROOT)
        if prepared is not None:
            # Pickled as it crosses from a helper process to the writer (its own reduce).
            travelled = pickle.loads(pickle.dumps(prepared))
            assert travelled == prepared
            held = (*travelled.rows_read, *travelled.inserted, *travelled.updated)
            assert all(type(member) is HeldMember for member in held)
            prepared = travelled
        answers = one_at_a_time(routes, account, meanwhile)(conn)
        # As the writer applies it: in a group, whose savepoint takes back a failed write.
        group = None if prepared is None else PreparedGroup("batch", 0, 0, (prepared,))
        applied = None if group is None else apply_prepared_group(conn, routes, account, group)
        seen["prepared"] += prepared is not None
        seen["applied"] += applied is not None
        seen["stale"] += prepared is not None and applied is None
        if applied is None:
            applied = execute_run(conn, routes, account, run, api_root=ROOT)
        if applied is None:
            applied = one_at_a_time(routes, account, operations)(conn)
        return answers + applied

    return work


def test_a_prepared_run_answers_and_writes_as_the_writer_would(
    services: Services, seeded: tuple[str, Account]
) -> None:
    list_id, account = seeded
    seen = {"examples": 0, "prepared": 0, "applied": 0, "stale": 0}

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        meanwhile=st.lists(member_operation(list_id), max_size=2),
        operations=st.lists(member_operation(list_id), min_size=2, max_size=12),
    )
    def check(meanwhile: Operations, operations: Operations) -> None:
        seen["examples"] += 1
        plain = in_rolled_back(
            services, one_at_a_time(services.routes, account, meanwhile + operations), list_id
        )
        work = _prepared_then_applied(services, account, meanwhile, operations, seen)
        assert in_rolled_back(services, work, list_id) == plain

    check()
    # Both ways out were taken: the prepared run written, and found stale and run again.
    assert seen["applied"] >= seen["examples"] // 4, seen
    assert seen["stale"] > 0, seen


def _add(list_id: str, email: str) -> tuple[str, str, str | None]:
    body = orjson.dumps({"email_address": email, "status": "subscribed"}).decode()
    return "POST", f"/lists/{list_id}/members", body


def _patch(list_id: str, email: str) -> tuple[str, str, str | None]:
    return "PATCH", member_path(list_id, email), orjson.dumps({"vip": True}).decode()


@pytest.mark.parametrize(
    ("then", "statuses"),
    [
        # Found absent and added: the run's insert fails on the unique (list, hash) index.
        (_add, [200, 200, 400, 200]),
        # Found absent and only answered (404): the writer looks again.
        (_patch, [200, 200, 200, 200]),
    ],
)
def test_an_address_added_meanwhile_sends_the_run_back(
    services: Services,
    seeded: tuple[str, Account],
    then: Callable[[str, str], tuple[str, str, str | None]],
    statuses: list[int],
) -> None:
    """The writer does not look again for the addresses a run found absent and then added
    (their insert would fail), but does for every other address it read."""
    list_id, account = seeded
    operations = [
        _add(list_id, "first-new@example.org"),
        then(list_id, "raced@example.org"),
        _add(list_id, "last@example.org"),
    ]
    meanwhile = [_add(list_id, "raced@example.org")]
    seen = {"prepared": 0, "applied": 0, "stale": 0}
    plain = in_rolled_back(
        services, one_at_a_time(services.routes, account, meanwhile + operations), list_id
    )
    work = _prepared_then_applied(services, account, meanwhile, operations, seen)
    assert in_rolled_back(services, work, list_id) == plain
    assert seen == {"prepared": 1, "applied": 0, "stale": 1}
    assert [status for status, _body in plain[0]] == statuses


_MEMBER_TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ['"web_id":-1', '\\"web_id\\":-2,', "web_id", "-1"]
)


@given(
    placeholder=st.integers(1, 10_000),
    web_id=st.integers(1, 2**53),
    texts=st.lists(_MEMBER_TEXT, min_size=1, max_size=6),
)
def test_only_the_placeholder_web_id_is_replaced(
    placeholder: int, web_id: int, texts: list[str]
) -> None:
    """Whatever a member's own text holds, only the web id key's placeholder changes."""

    def member(value: int) -> dict[str, Any]:
        return {
            "id": texts[0],
            "full_name": texts[-1],
            "web_id": value,
            "merge_fields": {f"F{i}": text for i, text in enumerate(texts)},
            "tags": [{"id": 1, "name": text} for text in texts],
        }

    encoded = orjson.dumps(member(-placeholder)).decode()
    assert with_web_ids(encoded, {-placeholder: web_id}) == orjson.dumps(member(web_id)).decode()


def _answers(services: Services, api: ApiUser, list_id: str) -> list[Any]:
    """The results of `_mixed_operations` on the list, its id aside."""
    batch = submit(api.client, _mixed_operations(list_id))
    drive(services, batch["id"])
    archive = fetch_archive(api.client, api.client.get(f"/3.0/batches/{batch['id']}").json())
    results = sorted(archive.results, key=lambda result: int(result["operation_id"]))
    return [
        (result["operation_id"], result["status_code"], normalise(_without(list_id, result)))
        for result in results
    ]


def _without(list_id: str, result: dict[str, Any]) -> Any:
    return orjson.loads(orjson.dumps(response_of(result)).decode().replace(list_id, "LIST"))


def _mixed_operations(list_id: str) -> list[dict[str, Any]]:
    members = f"/lists/{list_id}/members"
    operations: list[dict[str, Any]] = []
    for i in range(30):
        address = f"m{i % 20}@example.org"
        body = {"email_address": address, "status": "subscribed", "tags": ["red"]}
        operations.append({"method": "POST", "path": members, "body": orjson.dumps(body).decode()})
        if i % 3 == 0:
            upsert = {"email_address": address, "status_if_new": "pending", "status": "cleaned"}
            operations.append(
                {
                    "method": "PUT",
                    "path": f"{members}/{address}",
                    "body": orjson.dumps(upsert).decode(),
                }
            )
        if i % 5 == 0:
            operations.append({"method": "DELETE", "path": f"{members}/{address}"})
    for number, operation in enumerate(operations):
        operation["operation_id"] = str(number)
    return operations


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_helper_processes_prepare_a_batch_as_the_writer_runs_it(
    api: ApiUser, services: Services
) -> None:
    """Real helper processes over the test's SQLite file: the same batch, once with them and
    once without, on two lists seeded alike, gives the same results."""
    helpers = GroupHelpers(services.database.url, 1, min_operations=1)
    try:
        assert helpers.warm_up(timeout=60), "the helper process did not start"
        plain_list, helped_list = seed_list(api), seed_list(api)
        plain = _answers(services, api, plain_list)
        services.__dict__["engine"] = dataclasses.replace(services.engine, preparer=helpers)
        helped = _answers(services, api, helped_list)
    finally:
        helpers.close()
    assert helpers.prepared > 0
    assert helped == plain


def _spawned_children() -> list[psutil.Process]:
    children = psutil.Process().children(recursive=True)
    return [child for child in children if "multiprocessing.spawn" in " ".join(child.cmdline())]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_killed_helper_costs_only_its_groups_trip(api: ApiUser, services: Services) -> None:
    """A helper killed outright (the OOM killer, say): the batch runs the plain way, with
    the same results, and the helpers are started again for the groups after it."""
    helpers = GroupHelpers(services.database.url, 1, min_operations=1)
    try:
        assert helpers.warm_up(timeout=60)
        lists = [seed_list(api) for _ in range(3)]
        plain = _answers(services, api, lists[0])
        services.__dict__["engine"] = dataclasses.replace(services.engine, preparer=helpers)
        (helper,) = _spawned_children()
        helper.kill()
        helper.wait(timeout=10)
        assert _answers(services, api, lists[1]) == plain
        assert helpers.warm_up(timeout=60), "the helpers were not started again"
        prepared = helpers.prepared
        assert _answers(services, api, lists[2]) == plain
        assert helpers.prepared > prepared
    finally:
        helpers.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_helper_plans_a_batchs_chunks_as_the_server_would(
    api: ApiUser, services: Services
) -> None:
    """Members with operations far apart hold the cuts back (decision 19): the same chunks."""
    helpers = GroupHelpers(services.database.url, 1, min_operations=1)
    try:
        assert helpers.warm_up(timeout=60)
        members = f"/lists/{seed_list(api)}/members"
        operations: list[dict[str, Any]] = []
        for i in range(60):
            body = orjson.dumps({"email_address": f"p{i}@example.org", "status": "subscribed"})
            operations.append({"method": "POST", "path": members, "body": body.decode()})
            if i % 7 == 3:  # a member's second operation: no cut between the two
                again = {"method": "PATCH", "path": f"{members}/p{i}@example.org", "body": "{}"}
                operations.append(again)
        batch = submit(api.client, operations)
        with services.database.read() as conn:
            here = services.batch_store.plan(conn, batch["id"], 20)
        assert len(here) > 1
        assert helpers.plan(batch["id"], 20) == here
    finally:
        helpers.close()
