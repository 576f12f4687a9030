"""Runs executed set-wise answer and write exactly what the same operations do one at a time.

Both sides start from the same database: each runs inside a transaction that is rolled back,
so every example compares the two paths over one seeded list (docs/architecture.md
decision 18).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, select, text

from conveyor.batches.executor import OperationResult, run_operation
from conveyor.batches.runs import Run, execute_run, plan_runs, run_candidate
from conveyor.composition import Services
from conveyor.domain.accounts import Account
from conveyor.domain.ids import subscriber_hash
from conveyor.marketing.routing import RouteTable
from conveyor.storage.tables import lists, members, tags
from tests.batches.support import create_list
from tests.conftest import ApiUser

ROOT = "http://testserver/3.0"
ADDRESSES = [
    "ann@example.org",
    "Bob@Example.org",
    "seeded@example.org",
    "archived@example.org",
    "forgotten@example.org",
    "not-an-email",
]
STATUSES = ["subscribed", "unsubscribed", "pending", "cleaned"]
# A number field: "x" is a merge field error.
AGES = st.sampled_from([None, 7, "x"])
TAG_NAMES = st.sampled_from(["red", "blue"])


def member_path(list_id: str, address: str) -> str:
    return f"/lists/{list_id}/members/{subscriber_hash(address)}"


def _with_age(body: dict[str, Any], age: Any) -> dict[str, Any]:
    if age is not None:
        body["merge_fields"] = {"AGE": age}
    return body


@st.composite
def member_operation(draw: st.DrawFn, list_id: str) -> tuple[str, str, str | None]:
    address = draw(st.sampled_from(ADDRESSES))
    path = member_path(list_id, address)
    kind = draw(st.sampled_from(["post", "put", "patch", "delete", "tags", "get", "bad"]))
    body: dict[str, Any] | None = None
    if kind == "post":
        body = {"email_address": address, "status": draw(st.sampled_from(STATUSES))}
        if draw(st.booleans()):
            body["tags"] = [draw(TAG_NAMES)]
        return (
            "POST",
            f"/lists/{list_id}/members",
            orjson.dumps(_with_age(body, draw(AGES))).decode(),
        )
    if kind == "put":
        body = {"email_address": address, "status_if_new": draw(st.sampled_from(STATUSES))}
        if draw(st.booleans()):
            body["status"] = draw(st.sampled_from(STATUSES))
        return "PUT", path, orjson.dumps(_with_age(body, draw(AGES))).decode()
    if kind == "patch":
        body = _with_age({}, draw(AGES))
        if draw(st.booleans()):
            body["status"] = draw(st.sampled_from(STATUSES))
        if draw(st.integers(0, 4)) == 0:
            body["email_address"] = draw(st.sampled_from(ADDRESSES))
        return "PATCH", path, orjson.dumps(body).decode()
    if kind == "delete":
        return "DELETE", path, None
    if kind == "tags":
        changes = [
            {"name": draw(TAG_NAMES), "status": draw(st.sampled_from(["active", "inactive"]))}
        ]
        return "POST", f"{path}/tags", orjson.dumps({"tags": changes}).decode()
    if kind == "get":
        return "GET", path, None
    return "POST", f"/lists/{list_id}/members", "{not json"


def seed_list(api: ApiUser) -> str:
    list_id = create_list(api.client)
    field = {"tag": "AGE", "name": "Age", "type": "number"}
    assert api.client.post(f"/3.0/lists/{list_id}/merge-fields", json=field).status_code == 200
    for address in ("seeded@example.org", "archived@example.org", "forgotten@example.org"):
        body = {"email_address": address, "status": "subscribed", "tags": ["red"]}
        assert api.client.post(f"/3.0/lists/{list_id}/members", json=body).status_code == 200
    assert (
        api.client.delete(f"/3.0{member_path(list_id, 'archived@example.org')}").status_code == 204
    )
    erase = f"/3.0{member_path(list_id, 'forgotten@example.org')}/actions/delete-permanent"
    assert api.client.post(erase).status_code == 204
    return list_id


_VARYING = {"web_id", "unique_email_id", "contact_id", "last_changed", "timestamp_opt",
            "timestamp_signup", "instance", "date_added"}  # fmt: skip


def normalise(value: Any) -> Any:
    """Ids and times aside: what is left must be equal."""
    if isinstance(value, dict):
        tag = set(value) <= {"id", "name", "date_added"} and "name" in value
        return {
            key: "*" if key in _VARYING or (tag and key == "id") else normalise(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [normalise(item) for item in value]
    return value


def final_rows(conn: Connection, list_id: str) -> tuple[list[Any], list[str]]:
    list_pk = conn.execute(select(lists.c.pk).where(lists.c.list_id == list_id)).scalar_one()
    rows = conn.execute(
        select(members.c.subscriber_hash, members.c.email_address, members.c.status,
               members.c.data, members.c.account_pk)
        .where(members.c.list_pk == list_pk)
        .order_by(members.c.subscriber_hash)
    ).all()  # fmt: skip
    names = conn.execute(
        select(tags.c.name).where(tags.c.list_pk == list_pk).order_by(tags.c.name)
    ).scalars()
    data = [
        (h, email, status, normalise(orjson.loads(d) if isinstance(d, str) else d), pk)
        for h, email, status, d, pk in rows
    ]
    return data, list(names)


Outcome = tuple[list[tuple[int, Any]], Any]


def in_rolled_back(services: Services, work: Callable[[Connection], list[tuple[int, str]]],
                    list_id: str) -> Outcome:  # fmt: skip
    with services.database.writer.connect() as conn:
        transaction = conn.begin()
        try:
            answers = work(conn)
            final = final_rows(conn, list_id)
        finally:
            transaction.rollback()
    bodies = [(status, normalise(orjson.loads(body)) if body else None) for status, body in answers]
    return bodies, final


def one_at_a_time(
    routes: RouteTable, account: Account, operations: list[tuple[str, str, str | None]]
) -> Callable[[Connection], list[tuple[int, str]]]:
    def work(conn: Connection) -> list[tuple[int, str]]:
        answers: list[tuple[int, str]] = []
        for method, path, body in operations:
            results: list[OperationResult] = run_operation(
                conn, routes, account, method, path, {}, body, api_root=ROOT, page_size=10
            )
            assert len(results) == 1
            answers.append((results[0].status_code, results[0].response))
        return answers

    return work


def _set_wise(
    routes: RouteTable, account: Account, operations: list[tuple[str, str, str | None]]
) -> Callable[[Connection], list[tuple[int, str]]]:
    def work(conn: Connection) -> list[tuple[int, str]]:
        candidates = [
            run_candidate(routes, i, method, path, {}, body)
            for i, (method, path, body) in enumerate(operations)
        ]
        planned = list(plan_runs(candidates))
        assert len(planned) == 1 and isinstance(planned[0], Run), planned
        answers = execute_run(conn, routes, account, planned[0], api_root=ROOT)
        assert answers is not None, "the run fell back to one at a time"
        return answers

    return work


@pytest.fixture
def seeded(api: ApiUser, services: Services) -> tuple[str, Account]:
    list_id = seed_list(api)
    with services.database.read() as conn:
        account = services.accounts.account_for_key(conn, api.key)
    assert account is not None
    return list_id, account


def test_a_run_answers_and_writes_as_one_at_a_time(
    services: Services, seeded: tuple[str, Account]
) -> None:
    list_id, account = seeded
    routes = services.routes

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(member_operation(list_id), min_size=2, max_size=14))
    def check(operations: list[tuple[str, str, str | None]]) -> None:
        plain = in_rolled_back(services, one_at_a_time(routes, account, operations), list_id)
        runs = in_rolled_back(services, _set_wise(routes, account, operations), list_id)
        assert runs == plain

    check()


def test_a_run_keeps_the_members_it_wrote(
    api: ApiUser, services: Services, seeded: tuple[str, Account]
) -> None:
    """Committed, the run's inserts and updates are there, and the list's stats count them."""
    list_id, account = seeded
    routes = services.routes
    operations: list[tuple[str, str, str | None]] = [
        ("POST", f"/lists/{list_id}/members", _new_member(f"new{i}@example.org")) for i in range(5)
    ]
    seeded_path = member_path(list_id, "seeded@example.org")
    operations.append(("PATCH", seeded_path, '{"status": "unsubscribed"}'))
    with services.database.write() as conn:
        answers = _set_wise(routes, account, operations)(conn)
    assert [status for status, _ in answers] == [200] * 6
    with services.database.read() as conn:
        rows, _names = final_rows(conn, list_id)
    statuses = {email: status for _h, email, status, _d, _pk in rows}
    assert statuses["seeded@example.org"] == "unsubscribed"
    assert all(statuses[f"new{i}@example.org"] == "subscribed" for i in range(5))
    stats = api.client.get(f"/3.0/lists/{list_id}").json()["stats"]
    assert stats["member_count"] == 5
    assert stats["unsubscribe_count"] == 1
    for i in range(5):
        got = api.client.get(f"/3.0{member_path(list_id, f'new{i}@example.org')}")
        assert got.status_code == 200 and got.json()["status"] == "subscribed"


def _new_member(address: str) -> str:
    return orjson.dumps({"email_address": address, "status": "subscribed"}).decode()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_run_that_races_an_api_write_goes_one_at_a_time(
    services: Services, seeded: tuple[str, Account]
) -> None:
    """Another transaction adds an address the run is about to add: the run's insert waits
    for it, fails on the unique index, and the run leaves nothing behind (the caller then
    runs it one at a time, where the add is Member Exists)."""
    list_id, account = seeded
    routes = services.routes
    raced = "raced@example.org"
    operations: list[tuple[str, str, str | None]] = [
        ("POST", f"/lists/{list_id}/members", _new_member("calm@example.org")),
        ("POST", f"/lists/{list_id}/members", _new_member(raced)),
    ]
    answers: list[list[tuple[int, str]] | None] = []
    with services.database.writer.connect() as other:
        other_transaction = other.begin()
        plain = one_at_a_time(routes, account, operations[1:])(other)
        assert plain[0][0] == 200

        def run_in_a_group() -> None:
            with services.database.writer.connect() as conn, conn.begin():
                candidates = [
                    run_candidate(routes, i, method, path, {}, body)
                    for i, (method, path, body) in enumerate(operations)
                ]
                (run,) = plan_runs(candidates)
                assert isinstance(run, Run)
                result = execute_run(conn, routes, account, run, api_root=ROOT)
                answers.append(result)
                if result is None:
                    answers.append(one_at_a_time(routes, account, operations)(conn))

        group = threading.Thread(target=run_in_a_group)
        group.start()
        deadline = time.monotonic() + 30
        while not _waits_for_a_lock(services):
            assert time.monotonic() < deadline, "the run never waited for the other insert"
        other_transaction.commit()
        group.join()
    assert answers[0] is None
    fallback = answers[1]
    assert fallback is not None
    assert [status for status, _ in fallback] == [200, 400]
    assert orjson.loads(fallback[1][1])["title"] == "Member Exists"
    with services.database.read() as conn:
        rows, _names = final_rows(conn, list_id)
    emails = [email for _h, email, _s, _d, _pk in rows]
    assert emails.count(raced) == 1 and "calm@example.org" in emails


def _waits_for_a_lock(services: Services) -> bool:
    with services.database.read() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return int(waiting) > 0
