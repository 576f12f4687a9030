"""`fields` / `exclude_fields`: comma-separated, dot notation for nested fields.

On a collection response the names are written with the collection key in front
(`members.email_address`), exactly as on the real service, and `total_items` / `_links`
are ordinary top-level fields.
"""

from __future__ import annotations

from typing import Any


def parse_field_list(raw: str | None) -> list[list[str]]:
    if not raw:
        return []
    return [name.strip().split(".") for name in raw.split(",") if name.strip()]


def apply_field_selection(body: Any, fields: str | None, exclude_fields: str | None) -> Any:
    include = parse_field_list(fields)
    exclude = parse_field_list(exclude_fields)
    if include:
        body = _include(body, include)
    if exclude:
        body = _exclude(body, exclude)
    return body


def _include(value: Any, paths: list[list[str]]) -> Any:
    if isinstance(value, list):
        return [_include(item, paths) for item in value]
    if not isinstance(value, dict):
        return value
    selected: dict[str, Any] = {}
    by_head: dict[str, list[list[str]]] = {}
    for path in paths:
        by_head.setdefault(path[0], []).append(path[1:])
    for key, rests in by_head.items():
        if key not in value:
            continue
        if any(not rest for rest in rests):
            selected[key] = value[key]
        else:
            selected[key] = _include(value[key], rests)
    return selected


def _exclude(value: Any, paths: list[list[str]]) -> Any:
    if isinstance(value, list):
        return [_exclude(item, paths) for item in value]
    if not isinstance(value, dict):
        return value
    result = dict(value)
    nested: dict[str, list[list[str]]] = {}
    for path in paths:
        if len(path) == 1:
            result.pop(path[0], None)
        else:
            nested.setdefault(path[0], []).append(path[1:])
    for key, rests in nested.items():
        if key in result:
            result[key] = _exclude(result[key], rests)
    return result


class FieldSelectionError(ValueError):
    """`fields` or `exclude_fields` names something the answer can never hold, or both
    parameters were given at once."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


def check_field_selection(body: Any, fields: str | None, exclude_fields: str | None) -> None:
    """Raise `FieldSelectionError` unless the selection can be applied to `body` as asked.

    A name is known when the whole answer holds it at that place; inside a list it is
    enough that one item holds it, and an empty list has nothing to judge by.
    """
    include = parse_field_list(fields)
    exclude = parse_field_list(exclude_fields)
    if include and exclude:
        raise FieldSelectionError(
            "exclude_fields", "fields and exclude_fields cannot be used together."
        )
    parameter = "fields" if include else "exclude_fields"
    for path in include or exclude:
        if not all(path) or not _holds(body, path):
            raise FieldSelectionError(
                parameter, f"'{'.'.join(path)}' is not a field of this resource."
            )


def _holds(value: Any, path: list[str]) -> bool:
    if not path:
        return True
    if isinstance(value, list):
        return not value or any(_holds(item, path) for item in value)
    if isinstance(value, dict):
        return path[0] in value and _holds(value[path[0]], path[1:])
    return False  # a name below a plain value
