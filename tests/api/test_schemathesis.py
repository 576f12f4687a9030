"""Schemathesis over the spec subset, in-process on the ASGI app, for every non-batch route.

Each operation gets generated requests (valid and invalid by the spec) with a real key; half
of them aim at a real list, member and merge field so that handlers past the 404 are
reached. Checks: no 5xx, and every 4xx is a Mailchimp problem document.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from conveyor.composition import Services
from conveyor.http.app import create_app
from conveyor.reference import marketing_subset
from tests.api.support import PROBLEM_KEYS, PROBLEM_TYPE, add_member
from tests.conftest import ApiUser

EXAMPLES_PER_OPERATION = 15
NON_BATCH = r"^/(ping)?$|^/lists"


def _schema(app: Any = None) -> Any:
    schema = schemathesis.openapi.from_dict(marketing_subset())
    schema.app = app
    return schema.include(path_regex=NON_BATCH)


def _operations() -> list[tuple[str, str]]:
    found = []
    for result in _schema().get_all_operations():
        operation = result.ok()
        found.append((operation.method.upper(), operation.path))
    return found


def four_xx_is_a_problem_document(ctx: Any, response: Any, case: Any) -> bool | None:
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type == PROBLEM_TYPE, f"{response.status_code} with {content_type!r}"
    body = response.json()
    assert isinstance(body, dict) and set(body) >= PROBLEM_KEYS, body
    assert body["status"] == response.status_code, body
    request_id = response.headers.get("x-request-id", [""])
    request_id = request_id[0] if isinstance(request_id, list) else request_id
    assert body["instance"] == request_id, (body, request_id)
    return True


# Shapes of 2xx bodies are checked by the hand-written tests against the same spec, allowing
# the "" the real service sends for dates it does not have (schemathesis would flag those).
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    four_xx_is_a_problem_document,
]


@pytest.mark.parametrize(("method", "path"), _operations(), ids=lambda v: str(v))
def test_operation(method: str, path: str, api: ApiUser, list_id: str, services: Services) -> None:
    member = add_member(api, list_id, "fuzz.target@example.com", tags=["t"])
    real = {"list_id": list_id, "subscriber_hash": member["id"], "merge_id": "1"}
    schema = _schema()
    schema.app = create_app(services)
    operation = (
        schema[path][method].ok() if hasattr(schema[path][method], "ok") else schema[path][method]
    )
    names = (
        {p.name for p in operation.path_parameters}
        if hasattr(operation, "path_parameters")
        else set()
    )
    pinned = {name: value for name, value in real.items() if name in names}
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=pinned),
        operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=pinned),
        operation.as_strategy(GenerationMode.POSITIVE),
    )
    headers = {"Authorization": f"Bearer {api.key}"}

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()
