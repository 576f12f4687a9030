"""`ListStore.context` remembers a list within a transaction, only as long as that is right."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import Connection

from conveyor.composition import Services
from conveyor.domain.accounts import Account
from conveyor.marketing.routing import Reply, invoke
from conveyor.storage.tables import merge_fields
from tests.conftest import LIST_BODY


class CountingStatement:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def all(self, conn: Connection, params: Any) -> Any:
        self.calls += 1
        return self.inner.all(conn, params)


@pytest.fixture
def list_reads(services: Services, monkeypatch: pytest.MonkeyPatch) -> CountingStatement:
    lists = services.marketing_stores.lists
    counting = CountingStatement(lists.context_statement)
    monkeypatch.setattr(lists, "context_statement", counting)
    return counting


@pytest.fixture
def account(services: Services) -> Account:
    with services.database.write() as conn:
        key = services.accounts.create_key(conn, services.accounts.create_account(conn))
        found = services.accounts.account_for_key(conn, key)
    assert found is not None
    return found


def call(
    services: Services, conn: Connection, account: Account, method: str, path: str, body: Any
) -> Reply:
    raw = None if body is None else orjson.dumps(body)
    return invoke(services.routes, conn, account, method, path, {}, raw, api_root="http://x/3.0")


def new_list(services: Services, account: Account) -> str:
    with services.database.write() as conn:
        reply = call(services, conn, account, "POST", "/lists", LIST_BODY)
    assert reply.status == 200, reply.body
    return str(reply.body["id"])


def add(services: Services, conn: Connection, account: Account, list_id: str, email: str,
        merge: dict[str, Any] | None = None) -> Reply:  # fmt: skip
    body: dict[str, Any] = {"email_address": email, "status": "subscribed"}
    if merge is not None:
        body["merge_fields"] = merge
    return call(services, conn, account, "POST", f"/lists/{list_id}/members", body)


def test_one_read_per_transaction(
    services: Services, account: Account, list_reads: CountingStatement
) -> None:
    list_id = new_list(services, account)
    with services.database.write() as conn:
        for i in range(20):
            assert add(services, conn, account, list_id, f"m{i}@example.org").status == 200
    assert list_reads.calls == 1
    with services.database.write() as conn:
        assert add(services, conn, account, list_id, "next@example.org").status == 200
    assert list_reads.calls == 2


def test_merge_field_changes_in_the_transaction_are_seen(
    services: Services, account: Account
) -> None:
    list_id = new_list(services, account)
    fields = f"/lists/{list_id}/merge-fields"
    with services.database.write() as conn:
        assert add(services, conn, account, list_id, "a@example.org").status == 200
        created = call(
            services, conn, account, "POST", fields,
            {"name": "Colour", "tag": "COLOUR", "type": "text", "required": True},
        )  # fmt: skip
        assert created.status == 200, created.body
        missing = add(services, conn, account, list_id, "b@example.org")
        assert missing.status == 400
        assert missing.body["errors"][0]["field"] == "COLOUR"
        given = add(services, conn, account, list_id, "c@example.org", {"COLOUR": "red"})
        assert given.body["merge_fields"]["COLOUR"] == "red"

        merge_id = created.body["merge_id"]
        patch = {"name": "Colour", "required": False}
        assert call(services, conn, account, "PATCH", f"{fields}/{merge_id}", patch).status == 200
        assert add(services, conn, account, list_id, "d@example.org").status == 200

        assert call(services, conn, account, "DELETE", f"{fields}/{merge_id}", None).status == 204
        gone = add(services, conn, account, list_id, "e@example.org", {"COLOUR": "red"})
        assert "COLOUR" not in gone.body["merge_fields"]

        assert call(services, conn, account, "DELETE", f"/lists/{list_id}", None).status == 204
        assert add(services, conn, account, list_id, "f@example.org").status == 404


def test_a_rolled_back_savepoint_leaves_nothing_remembered(
    services: Services, account: Account
) -> None:
    list_id = new_list(services, account)
    with services.database.write() as conn:
        assert add(services, conn, account, list_id, "a@example.org").status == 200
        savepoint = conn.begin_nested()
        created = call(
            services, conn, account, "POST", f"/lists/{list_id}/merge-fields",
            {"name": "Colour", "tag": "COLOUR", "type": "text", "required": True},
        )  # fmt: skip
        assert created.status == 200
        assert add(services, conn, account, list_id, "b@example.org").status == 400
        savepoint.rollback()
        assert add(services, conn, account, list_id, "c@example.org").status == 200


def test_a_later_transaction_sees_changes_made_elsewhere(
    services: Services, account: Account
) -> None:
    list_id = new_list(services, account)
    with services.database.writer.connect() as conn:
        with conn.begin():
            assert add(services, conn, account, list_id, "a@example.org").status == 200
            context = services.marketing_stores.lists.context(conn, account.pk, list_id)
            assert context is not None
            list_pk = context.pk
        # Another connection adds a required field behind the handlers' back.
        with services.database.write() as other:
            data = {
                "name": "Colour",
                "type": "text",
                "required": True,
                "default_value": "",
                "public": True,
                "display_order": 99,
                "options": {},
                "help_text": "",
            }
            other.execute(
                merge_fields.insert().values(list_pk=list_pk, merge_id=99, tag="COLOUR", data=data)
            )
        with conn.begin():
            refused = add(services, conn, account, list_id, "b@example.org")
            assert refused.status == 400
            assert refused.body["errors"][0]["field"] == "COLOUR"
