"""Member creates per second through the route table, beside the SQL floor.

- direct: `conveyor.marketing.routing.invoke(POST /lists/{id}/members)` on a connection from
  `services.database.writer`, `group` calls per transaction, as the batch executor runs them
  (without its per-operation savepoint and result rows).
- floor (Core): the statements `add_member` issues for a new address, run with SQLAlchemy
  Core in the same transactions: the list and its merge fields (once per transaction, as
  `load_list` remembers them), then per create the member by hash and the insert.
- floor (DBAPI): the same SQL text on the sqlite3 cursor, JSON by orjson: what is left when
  SQLAlchemy's execution layer is taken away too.

The three run interleaved, round after round, on one fresh SQLite database, so that noise
from the rest of the machine falls on all of them alike; the median round is reported, per
second of wall time and per second of the process's CPU time.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, and_, bindparam, select
from sqlalchemy.sql import ClauseElement
from tests.conftest import LIST_BODY

from bench.report import Figure, print_table, write_json
from conveyor.composition import Services, open_services
from conveyor.domain.accounts import Account
from conveyor.marketing.routing import invoke
from conveyor.settings import Settings
from conveyor.storage.tables import lists, members, merge_fields

API_ROOT = "http://127.0.0.1:8000/3.0"
DIRECT_TARGET = 10_000.0

# The statements of `add_member` for a new address (see marketing/member_store.py).
LIST_CONTEXT = (
    select(lists.c.pk, merge_fields.c.tag, merge_fields.c.data)
    .select_from(lists.outerjoin(merge_fields, merge_fields.c.list_pk == lists.c.pk))
    .where(
        and_(
            lists.c.list_id == bindparam("list_id"),
            lists.c.account_pk == bindparam("account_pk"),
        )
    )
)
MEMBER_BY_HASH = select(
    members.c.web_id,
    members.c.subscriber_hash,
    members.c.email_address,
    members.c.unique_email_id,
    members.c.contact_id,
    members.c.status,
    members.c.data,
    members.c.last_changed,
).where(
    and_(members.c.list_pk == bindparam("list_pk"), members.c.subscriber_hash == bindparam("h"))
)
INSERT_MEMBER = members.insert().returning(members.c.web_id)
INSERT_COLUMNS = (
    "account_pk",
    "list_pk",
    "subscriber_hash",
    "email_address",
    "unique_email_id",
    "contact_id",
    "status",
    "data",
    "last_changed",
)


@dataclass
class Setup:
    services: Services
    account: Account
    list_id: str
    list_pk: int
    member_data: dict[str, Any]

    @property
    def path(self) -> str:
        return f"/lists/{self.list_id}/members"


def prepare(data_dir: Path) -> Setup:
    services = open_services(Settings(data_dir=data_dir, secret="bench"))
    with services.database.write() as conn:
        account_id = services.accounts.create_account(conn)
        account = services.accounts.account_for_key(
            conn, services.accounts.create_key(conn, account_id)
        )
        assert account is not None
        reply = invoke(
            services.routes, conn, account, "POST", "/lists", {}, orjson.dumps(LIST_BODY),
            api_root=API_ROOT, request_id="bench",
        )  # fmt: skip
        assert reply.status == 200, reply.body
        list_id = str(reply.body["id"])
        sample = invoke(
            services.routes, conn, account, "POST", f"/lists/{list_id}/members", {},
            orjson.dumps({"email_address": "sample@example.org", "status": "subscribed"}),
            api_root=API_ROOT, request_id="bench",
        )  # fmt: skip
        assert sample.status == 200, sample.body
        list_pk = int(
            conn.execute(select(lists.c.pk).where(lists.c.list_id == list_id)).scalar_one()
        )
        data = conn.execute(
            select(members.c.data).where(members.c.email_address == "sample@example.org")
        ).scalar_one()
    return Setup(services, account, list_id, list_pk, dict(data))


def emails(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}@example.org" for i in range(count)]


def grouped(setup: Setup, total: int, group: int) -> Iterator[tuple[Connection, range]]:
    """Transactions of `group` operations each on the writer engine, committed in turn."""
    for start in range(0, total, group):
        with setup.services.database.writer.connect() as conn, conn.begin():
            yield conn, range(start, min(start + group, total))


@dataclass
class Rate:
    """Operations per second of wall time, and per second of this process's CPU time (the
    run is single-threaded: on a busy machine the second is what the first would be alone)."""

    wall: float
    cpu: float


class Clock:
    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def rate(self, operations: int) -> Rate:
        return Rate(
            operations / (time.perf_counter() - self.wall),
            operations / (time.process_time() - self.cpu),
        )


def run_direct(setup: Setup, addresses: list[str], group: int) -> Rate:
    routes, account, path = setup.services.routes, setup.account, setup.path
    bodies = [orjson.dumps({"email_address": a, "status": "subscribed"}) for a in addresses]
    clock = Clock()
    for conn, indexes in grouped(setup, len(bodies), group):
        for i in indexes:
            reply = invoke(
                routes, conn, account, "POST", path, {}, bodies[i],
                api_root=API_ROOT, request_id="bench",
            )  # fmt: skip
            if reply.status != 200:
                raise RuntimeError(f"direct call answered {reply.status}: {reply.body}")
    return clock.rate(len(bodies))


def floor_params(setup: Setup, address: str, now: str) -> dict[str, Any]:
    digest = hashlib.md5(address.lower().encode()).hexdigest()
    return {
        "account_pk": setup.account.pk,
        "list_pk": setup.list_pk,
        "subscriber_hash": digest,
        "email_address": address,
        "unique_email_id": digest[:10],
        "contact_id": digest,
        "status": "subscribed",
        "data": setup.member_data,
        "last_changed": now,
    }


def run_floor_core(setup: Setup, addresses: list[str], group: int) -> Rate:
    context = {"list_id": setup.list_id, "account_pk": setup.account.pk}
    now = "2026-01-01T00:00:00+00:00"
    params = [floor_params(setup, a, now) for a in addresses]
    clock = Clock()
    for conn, indexes in grouped(setup, len(params), group):
        conn.execute(LIST_CONTEXT, context).all()
        for i in indexes:
            row = params[i]
            found = conn.execute(
                MEMBER_BY_HASH, {"list_pk": row["list_pk"], "h": row["subscriber_hash"]}
            ).first()
            assert found is None
            conn.execute(INSERT_MEMBER, row).scalar_one()
    return clock.rate(len(params))


def compiled(conn: Connection, statement: ClauseElement) -> tuple[str, tuple[str, ...]]:
    sql = statement.compile(dialect=conn.dialect)
    return sql.string, tuple(getattr(sql, "positiontup", None) or ())


def run_floor_dbapi(setup: Setup, addresses: list[str], group: int) -> Rate:
    now = "2026-01-01T00:00:00+00:00"
    params = [floor_params(setup, a, now) for a in addresses]
    with setup.services.database.writer.connect() as conn:
        list_sql, list_order = compiled(conn, LIST_CONTEXT)
        member_sql, member_order = compiled(conn, MEMBER_BY_HASH)
        insert = members.insert().values({c: bindparam(c) for c in INSERT_COLUMNS})
        insert_sql = compiled(conn, insert.returning(members.c.web_id))[0]
    context = {"list_id": setup.list_id, "account_pk": setup.account.pk}
    list_args = tuple(context[name] for name in list_order)
    clock = Clock()
    for conn, indexes in grouped(setup, len(params), group):
        cursor = conn.connection.cursor()
        for _pk, _tag, raw in cursor.execute(list_sql, list_args).fetchall():
            if raw is not None:
                orjson.loads(raw)
        for i in indexes:
            row = params[i]
            lookup = {"list_pk": row["list_pk"], "h": row["subscriber_hash"]}
            found = cursor.execute(member_sql, tuple(lookup[n] for n in member_order)).fetchone()
            assert found is None
            values = [row[c] for c in INSERT_COLUMNS]
            values[INSERT_COLUMNS.index("data")] = orjson.dumps(row["data"]).decode()
            cursor.execute(insert_sql, values).fetchone()
        cursor.close()
    return clock.rate(len(params))


def handler_statements(setup: Setup) -> dict[str, list[str]]:
    """The SQL that the first and the second direct create of a transaction send to SQLite
    (its trace callback sees everything, SQLAlchemy or not)."""
    seen: dict[str, list[str]] = {"first": [], "later": []}
    with setup.services.database.writer.connect() as conn, conn.begin():
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        try:
            for which, email in (("first", "t1@example.org"), ("later", "t2@example.org")):
                statements = seen[which]

                def trace(sql: str, into: list[str] = statements) -> None:
                    into.append(" ".join(sql.split()))

                raw.set_trace_callback(trace)
                reply = invoke(
                    setup.services.routes, conn, setup.account, "POST", setup.path, {},
                    orjson.dumps({"email_address": email, "status": "subscribed"}),
                    api_root=API_ROOT, request_id="bench",
                )  # fmt: skip
                assert reply.status == 200, reply.body
        finally:
            raw.set_trace_callback(None)
        conn.rollback()
    return seen


@contextmanager
def bench_setup() -> Iterator[Setup]:
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as folder:
        setup = prepare(Path(folder) / "data")
        try:
            yield setup
        finally:
            setup.services.close()


def measure(count: int, group: int, rounds: int) -> list[Figure]:
    runners: dict[str, Callable[[Setup, list[str], int], Rate]] = {
        "direct": run_direct,
        "floor_core": run_floor_core,
        "floor_dbapi": run_floor_dbapi,
    }
    rates: dict[str, list[Rate]] = {name: [] for name in runners}
    with bench_setup() as setup:
        statements = handler_statements(setup)
        run_direct(setup, emails("warmup", min(count, 2_000)), group)
        for round_no in range(rounds):
            for name, runner in runners.items():
                rates[name].append(runner(setup, emails(f"{name}{round_no}", count), group))
    names = {
        "direct": f"member creates, direct invoke ({group}/txn)",
        "floor_core": "  floor: same SQL via SQLAlchemy Core",
        "floor_dbapi": "  floor: same SQL on the sqlite3 cursor",
    }
    figures = []
    for key, name in names.items():
        wall = statistics.median(rate.wall for rate in rates[key])
        cpu = statistics.median(rate.cpu for rate in rates[key])
        figures.append(
            Figure(
                name,
                wall,
                "creates/s",
                DIRECT_TARGET if key == "direct" else None,
                note=f"{cpu:,.0f}/s per CPU-second",
                details={
                    "per_round": count,
                    "group": group,
                    "rounds": rounds,
                    "rate_per_cpu_second": cpu,
                    "rounds_wall": [rate.wall for rate in rates[key]],
                    "rounds_cpu": [rate.cpu for rate in rates[key]],
                },
            )
        )
    figures[0].details["handler_sql"] = statements
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=20_000, help="creates per round")
    parser.add_argument("--group", type=int, default=500, help="creates per transaction")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the median is kept)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    figures = measure(args.count, args.group, args.rounds)
    print_table(figures)
    for which, statements in figures[0].details["handler_sql"].items():
        print(f"\nSQL of the {which} direct create in a transaction:")
        for sql in statements:
            print("  ", sql[:110])
    print("\nwritten:", write_json("direct", figures, vars(args)))


if __name__ == "__main__":
    main()
