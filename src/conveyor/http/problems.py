"""The one table from exception type to problem document.

Services raise `Problem` for answers they decide, and their own exceptions for conditions
only the edge can word (a body too large, a client gone); this table words them. Lookup
follows the exception's class hierarchy, so a subclass may have its own entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import ClientDisconnect

from conveyor.batches.service import BodyTooLarge, UploadAbandoned
from conveyor.domain import problems
from conveyor.domain.idempotency import InvalidIdempotencyKey
from conveyor.domain.operations import InvalidBatchBody, MalformedJson, TooManyOperations
from conveyor.domain.problems import FieldError, Problem


def _invalid_batch_body(exc: InvalidBatchBody) -> Problem:
    return problems.invalid_resource(
        [FieldError(exc.field or "operations", exc.detail)], exc.detail
    )


PROBLEM_FOR: Mapping[type[BaseException], Callable[[Any], Problem]] = {
    Problem: lambda exc: exc,
    BodyTooLarge: lambda exc: problems.payload_too_large(exc.limit),
    TooManyOperations: lambda exc: Problem(413, "Request Entity Too Large", exc.detail),
    MalformedJson: lambda exc: problems.json_parse_error(exc.detail),
    InvalidBatchBody: _invalid_batch_body,
    UploadAbandoned: lambda _exc: Problem(
        408,
        "Request Timeout",
        "The batch was sent too slowly and was discarded. Please send it again.",
    ),
    InvalidIdempotencyKey: lambda exc: problems.bad_request(str(exc)),
    ClientDisconnect: lambda _exc: Problem(
        400, "Bad Request", "The client disconnected before the body was sent."
    ),
}


def problem_for(exc: BaseException) -> Problem | None:
    """The problem document an exception answers with, or None for a bug (a 500)."""
    for cls in type(exc).__mro__:
        make = PROBLEM_FOR.get(cls)
        if make is not None:
            return make(exc)
    return None
