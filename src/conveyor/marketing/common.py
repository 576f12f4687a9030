"""Pieces every Marketing API handler shares: links, paging, body validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from conveyor.domain import problems
from conveyor.domain.problems import FieldError

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


def schema_url(api_root: str, name: str) -> str:
    """Where the real service publishes JSON schemas, re-rooted on this server."""
    base = api_root.removesuffix("/3.0")
    return f"{base}/schema/3.0/{name}.json"


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
