"""Running operations: groups in one transaction, each operation inside a savepoint.

docs/architecture.md decision 2: a group's effects, its result rows, the chunk cursor and the batch
counters commit together or not at all, so no effect is applied twice and no result is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection

from conveyor.batches.group_hooks import GroupHooks, NoHooks, RanOperation
from conveyor.batches.prepared import PreparedGroup, apply_prepared_group, operation_params
from conveyor.batches.runs import Run, execute_run, plan_runs, run_candidate
from conveyor.domain import problems
from conveyor.domain.accounts import Account
from conveyor.domain.operation_path import UnsafeOperationPath, split_operation_path
from conveyor.domain.result_cap import capped_response
from conveyor.domain.states import is_success
from conveyor.marketing.routing import Reply, RouteTable, invoke, new_request_id, select_fields
from conveyor.storage.batches import BatchStore, Claim, ResultRow, StoredOperation
from conveyor.storage.raw_sql import RawSavepoint


class OperationResult(NamedTuple):
    status_code: int
    response: str


@dataclass
class GroupOutcome:
    committed: bool
    operations: int = 0
    errored: int = 0
    ran: list[RanOperation] = field(default_factory=list)


_SELECTION = ("fields", "exclude_fields")


def encode_body(body: Any) -> str:
    return "" if body is None else orjson.dumps(body).decode()


def run_operation(
    conn: Connection,
    routes: RouteTable,
    account: Account,
    method: str,
    raw_path: str,
    params: Mapping[str, str],
    body: str | None,
    *,
    api_root: str,
    page_size: int,
) -> list[OperationResult]:
    """One batch operation → its results (several for a GET that pages a collection)."""
    try:
        path, path_query = split_operation_path(raw_path)
    except UnsafeOperationPath as exc:
        problem = problems.bad_request(exc.reason)
        return [OperationResult(400, encode_body(problem.to_document(new_request_id())))]
    query = {**path_query, **params}
    # Every operation gets a savepoint, reads too: on PostgreSQL a failed statement would
    # otherwise poison the whole group's transaction.
    savepoint = RawSavepoint(conn).__enter__()
    if method == "GET":
        results = _run_get(conn, routes, account, path, query, api_root, page_size)
    else:
        reply = invoke(routes, conn, account, method, path, query, body, api_root=api_root)
        results = [OperationResult(reply.status, encode_body(reply.body))]
    if all(is_success(result.status_code) for result in results):
        savepoint.release()
    else:
        savepoint.rollback()
    return results


def _run_get(
    conn: Connection,
    routes: RouteTable,
    account: Account,
    path: str,
    query: dict[str, str],
    api_root: str,
    page_size: int,
) -> list[OperationResult]:
    if "count" in query or not routes.may_be_collection(path):
        reply = _get(conn, routes, account, path, query, api_root)
        return [OperationResult(reply.status, encode_body(reply.body))]
    # Without `count`, the real service pages through the whole collection.
    results: list[OperationResult] = []
    offset = int(query.get("offset", "0")) if query.get("offset", "0").isdigit() else 0
    # `fields` / `exclude_fields` may drop `total_items`, which the paging reads: pages are
    # fetched whole and the selection is applied to each one here.
    fields, exclude = query.get("fields"), query.get("exclude_fields")
    whole = {k: v for k, v in query.items() if k not in _SELECTION} if fields or exclude else query
    while True:
        page_query = {**whole, "count": str(page_size), "offset": str(offset)}
        reply = _get(conn, routes, account, path, page_query, api_root)
        if not results and not _is_collection(reply):
            # Not a collection: answer as the plain GET it is, without our paging parameters.
            reply = _get(conn, routes, account, path, query, api_root)
            return [OperationResult(reply.status, encode_body(reply.body))]
        selected = select_fields(reply, fields, exclude) if fields or exclude else reply
        results.append(OperationResult(selected.status, encode_body(selected.body)))
        offset += page_size
        if not is_success(selected.status) or offset >= int(reply.body["total_items"]):
            return results


def _get(
    conn: Connection,
    routes: RouteTable,
    account: Account,
    path: str,
    query: Mapping[str, str],
    api_root: str,
) -> Reply:
    return invoke(routes, conn, account, "GET", path, query, None, api_root=api_root)


def _is_collection(reply: Reply) -> bool:
    return (
        is_success(reply.status)
        and isinstance(reply.body, dict)
        and isinstance(reply.body.get("total_items"), int)
    )


def run_group(
    conn: Connection,
    store: BatchStore,
    routes: RouteTable,
    account: Account,
    claim: Claim,
    start: int,
    stop: int,
    *,
    api_root: str,
    page_size: int,
    lease_seconds: float,
    hooks: GroupHooks | None = None,
    max_result_bytes: int | None = None,
    prepared: PreparedGroup | None = None,
) -> GroupOutcome:
    """Run operations [start, stop) of a claimed chunk inside the caller's transaction;
    `prepared`, if given, holds them answered already (batches/prepared.py), to be written
    unless what they were decided from has changed.

    The caller commits when `committed` is true and rolls back otherwise (the claim was lost).
    """
    if not store.advance_chunk(conn, claim, start, stop, lease_seconds):
        return GroupOutcome(committed=False)
    hooks = hooks or NoHooks()
    intercepts = hooks.intercepts(account)
    operations = store.load_operations(conn, claim.batch_id, start, stop)
    parsed = [operation_params(op) for op in operations]
    sink = _ResultSink(conn, store, claim.batch_id, max_result_bytes)
    answered = None
    if prepared is not None and not intercepts and prepared[:3] == (claim.batch_id, start, stop):
        answered = apply_prepared_group(conn, routes, account, prepared)
    plan: Iterable[Run | int] = range(len(operations))
    if answered is not None:
        # Runs cover their group, an answer for each operation (prepared.prepare_group).
        for op, params, (status, body) in zip(operations, parsed, answered, strict=True):
            sink.take(op, params, [OperationResult(status, body)])
        plan = ()
    elif not intercepts:
        # Runs of member operations go set-wise (batches/runs.py); a hook that must see
        # every operation keeps them all on the one-at-a-time path.
        candidates = [
            run_candidate(routes, i, op.method, op.path, parsed[i], op.body)
            for i, op in enumerate(operations)
        ]
        plan = plan_runs(candidates)
    for planned in plan:
        # In submission order: a run's operations, or one operation.
        if isinstance(planned, Run):
            done = execute_run(conn, routes, account, planned, api_root=api_root)
            if done is not None:
                for member_op, (status, body) in zip(planned.operations, done, strict=True):
                    index = member_op.position
                    sink.take(operations[index], parsed[index], [OperationResult(status, body)])
                continue
            indexes = [member_op.position for member_op in planned.operations]
        else:
            indexes = [planned]
        for index in indexes:
            op = operations[index]
            answer = (
                hooks.before_operation(account, claim.batch_id, op.method, op.path)
                if intercepts
                else None
            )
            if answer is not None:
                sink.take(op, parsed[index], [OperationResult(answer.status_code, answer.response)])
            else:
                sink.take(
                    op, parsed[index],
                    run_operation(
                        conn, routes, account, op.method, op.path, parsed[index], op.body,
                        api_root=api_root, page_size=page_size,
                    ),
                )  # fmt: skip
    rows, finished, errored, extra_pages, ran = (
        sink.rows,
        sink.finished,
        sink.errored,
        sink.extra_pages,
        sink.ran,
    )
    store.record_results(conn, claim.batch_id, rows, finished, errored, extra_pages)
    return GroupOutcome(committed=True, operations=finished, errored=errored, ran=ran)


# A group's result rows are written ahead once they hold this much: memory stays bounded
# by this and one result (itself capped), not by a group's worth of large answers.
FLUSH_BYTES = 16 * 1024 * 1024


class _ResultSink:
    """Turns each operation's results into result rows in submission order, as they come."""

    def __init__(
        self, conn: Connection, store: BatchStore, batch_id: str, max_result_bytes: int | None
    ) -> None:
        self.conn, self.store, self.batch_id = conn, store, batch_id
        self.max_result_bytes = max_result_bytes
        self.rows: list[ResultRow] = []
        self.ran: list[RanOperation] = []
        self.finished = self.errored = self.extra_pages = 0
        self._held = 0

    def take(
        self, op: StoredOperation, params: dict[str, str], results: list[OperationResult]
    ) -> None:
        code = results[0].status_code
        self.ran.append(
            RanOperation(op.seq, op.operation_id, op.method, op.path, params, op.body, code)
        )
        self.extra_pages += len(results) - 1
        for page, result in enumerate(results):
            status_code, response = result.status_code, result.response
            if self.max_result_bytes is not None:
                # No result row, operations page or archive file holds more than the cap.
                status_code, response = capped_response(
                    op.method, status_code, response,
                    max_bytes=self.max_result_bytes, new_instance=new_request_id,
                )  # fmt: skip
            self.rows.append((self.batch_id, op.seq, page, status_code, op.operation_id, response))
            self._held += len(response)
            self.finished += 1
            if not is_success(status_code):
                self.errored += 1
        if self._held >= FLUSH_BYTES:
            self.store.insert_results(self.conn, self.rows)
            self.rows, self._held = [], 0
