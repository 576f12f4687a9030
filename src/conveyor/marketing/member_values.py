"""A member's own values (beside merge fields) as the real service takes and answers them."""

from __future__ import annotations

from typing import Any

from conveyor.domain import problems
from conveyor.domain.problems import FieldError
from conveyor.domain.timestamps import answer_form, parse_timestamp

TIMESTAMP_FIELDS = ("timestamp_opt", "timestamp_signup")
# The real service's message when a value fits none of a schema's `anyOf` forms.
ANY_OF_MESSAGE = "Data did not match any of the schemas described in anyOf."


def normalize_timestamps(given: dict[str, Any]) -> dict[str, Any]:
    """`given` with its timestamps in the one form the API answers with (so that filters
    and sorting compare them as text); "" leaves a timestamp empty."""
    errors: list[FieldError] = []
    for name in TIMESTAMP_FIELDS:
        raw = given.get(name)
        if not raw:
            continue
        moment = parse_timestamp(raw)
        if moment is None:
            errors.append(FieldError(name, ANY_OF_MESSAGE))
        else:
            given[name] = answer_form(moment)
    if errors:
        raise problems.invalid_resource(errors)
    return given
