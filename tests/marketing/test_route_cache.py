"""`RouteTable.resolve` remembers paths; what it hands out stays the caller's."""

from __future__ import annotations

import pytest

from conveyor.domain.problems import Problem
from conveyor.marketing.routing import Call, Reply, RouteTable


def handler_a(call: Call) -> Reply:
    return Reply(200, "a")


def handler_b(call: Call) -> Reply:
    return Reply(200, "b")


def test_repeated_paths_resolve_alike_and_params_are_copies() -> None:
    table = RouteTable()
    table.add("GET", "/lists/{list_id}/members/{hash}", handler_a)
    first, params = table.resolve("GET", "/lists/L1/members/H1")
    params["list_id"] = "changed"
    again, params_again = table.resolve("GET", "/lists/L1/members/H1")
    assert first is again is handler_a
    assert params_again == {"list_id": "L1", "hash": "H1"}


def test_adding_a_route_forgets_what_was_resolved() -> None:
    table = RouteTable()
    table.add("POST", "/lists/{list_id}/members/{hash}/actions/{action}", handler_a)
    assert table.resolve("POST", "/lists/L/members/H/actions/delete-permanent")[0] is handler_a
    table.add("POST", "/lists/{list_id}/members/{hash}/actions/delete-permanent", handler_b)
    assert table.resolve("POST", "/lists/L/members/H/actions/delete-permanent")[0] is handler_b


def test_unknown_paths_and_methods_still_fail_each_time() -> None:
    table = RouteTable()
    table.add("GET", "/ping", handler_a)
    for _ in range(2):
        with pytest.raises(Problem) as missing:
            table.resolve("GET", "/nope")
        assert missing.value.status == 404
        with pytest.raises(Problem) as wrong:
            table.resolve("DELETE", "/ping")
        assert wrong.value.status == 405
