"""Pieces every Marketing API handler shares: links, paging, body validation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from conveyor.domain import problems
from conveyor.domain.problems import FieldError
from conveyor.domain.timestamps import answer_form, parse_timestamp

ModelT = TypeVar("ModelT", bound=BaseModel)

DEFAULT_COUNT = 10
MAX_COUNT = 1000
# Databases take 64-bit offsets; anything past this is an empty page anyway.
MAX_OFFSET = 2**53


def link(
    rel: str,
    href: str,
    method: str = "GET",
    target_schema: str | None = None,
    schema: str | None = None,
) -> dict[str, str]:
    entry = {"rel": rel, "href": href, "method": method}
    if target_schema:
        entry["targetSchema"] = target_schema
    if schema:
        entry["schema"] = schema
    return entry


def paging(query: Mapping[str, str]) -> tuple[int, int]:
    count = _non_negative_int(query, "count", DEFAULT_COUNT)
    offset = _non_negative_int(query, "offset", 0)
    return min(count, MAX_COUNT), min(offset, MAX_OFFSET)


def _non_negative_int(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise problems.invalid_resource(
            [FieldError(name, "This value should be a non-negative integer.")]
        )
    return value


def validate(model: type[ModelT], data: dict[str, Any]) -> ModelT:
    """Validate a body, turning pydantic's errors into Mailchimp's `errors` array."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise problems.invalid_resource(field_errors(exc)) from None


def field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(".".join(str(part) for part in error["loc"]), _message(error))
        for error in exc.errors(include_url=False)
    ]


# pydantic error types -> the JSON-schema type names the real service's messages use.
_EXPECTED = {
    "string_type": "string",
    "bool_type": "boolean",
    "int_type": "integer",
    "int_from_float": "integer",
    "float_type": "number",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
    "list_type": "array",
}


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "This value should not be blank."
    expected = _EXPECTED.get(kind)
    if expected is not None:
        # The real service's wording: "Schema describes boolean, string found instead".
        return f"Schema describes {expected}, {_json_type(error['input'])} found instead"
    return str(error["msg"])


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def query_flag(query: Mapping[str, Any], name: str) -> bool:
    """A boolean query parameter; absent or empty is false."""
    return query_bool(query, name) or False


def query_bool(query: Mapping[str, Any], name: str) -> bool | None:
    """A boolean query parameter: `true`/`false` (or 1/0; a batch operation's `params` may
    hold a JSON boolean); None when absent or empty."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise problems.invalid_resource([FieldError(name, "This value should be true or false.")])


_PLUS_AS_SPACE = re.compile(r"(T\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?) (\d{2}:?\d{2})$")


def query_time(query: Mapping[str, Any], name: str) -> str | None:
    """A time filter (ISO 8601, as `2015-10-21T15:41:36+00:00`) in the form stored times
    have, so the two compare as text; None when absent."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    # An unencoded `+00:00` arrives as ` 00:00`: a query string's `+` is a space.
    text = _PLUS_AS_SPACE.sub(r"\1+\2", str(raw).strip())
    moment = parse_timestamp(text)
    if moment is None:
        raise problems.invalid_resource(
            [
                FieldError(
                    name,
                    "This value should be a date and time in ISO 8601 format, "
                    "such as 2015-10-21T15:41:36+00:00.",
                )
            ]
        )
    return answer_form(moment)


def query_choice(query: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str | None:
    """A parameter that takes one of `choices` (compared without regard to case); None when
    absent."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    for choice in choices:
        if str(raw).strip().lower() == choice.lower():
            return choice
    raise problems.invalid_resource(
        [FieldError(name, f"The value '{raw}' is not one of: {', '.join(choices)}.")]
    )
