"""The Mailchimp spec subset as the oracle for response shapes."""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import quote

import jsonschema_rs

from conveyor.reference import marketing_subset

# The real service sends "" for a date it does not have (`timestamp_signup`, `last_sub_date`,
# `campaign_last_sent` …) although the spec declares `format: date-time`; formats are checked
# so that `oneOf` branches such as `first_payment` stay distinguishable, and this one departure
# is allowed.
_EMPTY_DATE = '"" is not a "date-time"'


@cache
def spec() -> dict[str, Any]:
    """The packaged spec subset; shared by the callers, who must not change it."""
    return marketing_subset()


@cache
def _validator(pointer: str) -> Any:
    # The whole document rides along so that `#/components/...` references resolve.
    document = {k: v for k, v in spec().items() if k not in ("jsonSchemaDialect", "openapi")}
    return jsonschema_rs.Draft202012Validator({"$ref": pointer, **document}, validate_formats=True)


def _escape(segment: str) -> str:
    # A JSON pointer inside a URI fragment: `~` and `/` escaped, braces percent-encoded.
    return quote(segment.replace("~", "~0").replace("/", "~1"), safe="~")


def response_pointer(method: str, path: str) -> str:
    """The 200 JSON response schema of one operation of the spec."""
    parts = ["paths", _escape(path), method.lower(), "responses", "200", "content"]
    return "#/" + "/".join([*parts, _escape("application/json"), "schema"])


def shape_errors(
    body: Any, *, schema: str | None = None, operation: tuple[str, str] | None = None
) -> list[str]:
    """Every way `body` departs from a component schema or an operation's 200 response."""
    if schema is not None:
        pointer = f"#/components/schemas/{schema}"
    else:
        assert operation is not None
        pointer = response_pointer(*operation)
    return [
        f"{list(error.instance_path)}: {error.message}"
        for error in _validator(pointer).iter_errors(body)
        if error.message != _EMPTY_DATE and not _empty_sms_status(error)
    ]


def _empty_sms_status(error: Any) -> bool:
    # The real service answers "" as the `sms_subscription_status` of a contact without SMS,
    # a value the spec's enum lacks (tests/shape_check.py tolerates it too).
    path = list(error.instance_path)
    return bool(path) and path[-1] == "sms_subscription_status" and error.instance == ""


def assert_shape(
    body: Any, *, schema: str | None = None, operation: tuple[str, str] | None = None
) -> None:
    errors = shape_errors(body, schema=schema, operation=operation)
    assert not errors, "\n".join(errors[:20])


def declared_properties(schema: str) -> set[str]:
    return set(spec()["components"]["schemas"][schema]["properties"])
