"""Loading fixtures: lists with their merge fields and members, from one JSON document.

Every part goes through the handler its own POST reaches (marketing.routing.invoke), in one
transaction with a savepoint per part, so a fixture is validated exactly as the API would
validate it. Any invalid part: one problem listing them all, and nothing is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection

from conveyor.domain import problems
from conveyor.domain.accounts import Account
from conveyor.domain.problems import FieldError
from conveyor.marketing.routing import RouteTable, invoke

NOTHING_LOADED = "The fixtures could not be loaded; nothing was loaded. See the 'errors' array."


@dataclass
class FixtureLoad:
    """What a load made (ids), and what it refused (one field error per bad part)."""

    lists: list[dict[str, Any]] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)


def load_fixtures(
    conn: Connection, routes: RouteTable, account: Account, document: dict[str, Any], api_root: str
) -> FixtureLoad:
    """Run every part inside the caller's transaction; the caller rolls back on errors."""
    load = FixtureLoad()
    given = document.get("lists", [])
    if not isinstance(given, list):
        load.errors.append(FieldError("lists", "Expected an array of lists."))
        return load
    for i, list_part in enumerate(given):
        where = f"lists[{i}]"
        if not isinstance(list_part, dict):
            load.errors.append(FieldError(where, "Expected a list object."))
            continue
        body = {k: v for k, v in list_part.items() if k not in ("merge_fields", "members")}
        created = _post(conn, routes, account, "/lists", body, api_root, where, load)
        if created is None:
            continue
        list_id = str(created["id"])
        made: dict[str, Any] = {
            "id": list_id,
            "name": created.get("name"),
            "merge_fields": [],
            "members": [],
        }
        for kind, path, keep in (
            ("merge_fields", f"/lists/{list_id}/merge-fields", ("merge_id", "tag")),
            ("members", f"/lists/{list_id}/members", ("id", "email_address")),
        ):
            parts = list_part.get(kind, [])
            if not isinstance(parts, list):
                load.errors.append(FieldError(f"{where}.{kind}", "Expected an array."))
                continue
            for j, part in enumerate(parts):
                answer = _post(
                    conn, routes, account, path, part, api_root, f"{where}.{kind}[{j}]", load
                )
                if answer is not None:
                    made[kind].append({name: answer.get(name) for name in keep})
        load.lists.append(made)
    return load


def _post(
    conn: Connection,
    routes: RouteTable,
    account: Account,
    path: str,
    body: Any,
    api_root: str,
    where: str,
    load: FixtureLoad,
) -> dict[str, Any] | None:
    if not isinstance(body, dict):
        load.errors.append(FieldError(where, "Expected an object."))
        return None
    savepoint = conn.begin_nested()
    reply = invoke(routes, conn, account, "POST", path, {}, orjson.dumps(body), api_root=api_root)
    if 200 <= reply.status < 300 and isinstance(reply.body, dict):
        savepoint.commit()
        return reply.body
    savepoint.rollback()
    load.errors.append(FieldError(where, _explain(reply.body)))
    return None


def _explain(document: Any) -> str:
    """One line from a problem document: its title, detail and field errors."""
    if not isinstance(document, dict):
        return "Refused."
    text = f"{document.get('title', 'Error')}: {document.get('detail', '')}".strip()
    for error in document.get("errors", []) or []:
        text += f" [{error.get('field', '')}: {error.get('message', '')}]"
    return text


def refused(load: FixtureLoad) -> problems.Problem:
    return problems.invalid_resource(load.errors, NOTHING_LOADED)
