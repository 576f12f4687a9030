"""Every API answer compared with Mailchimp's spec for its operation.

`check_response(method, url_path, query, status, body, headers)` lists how one answer departs
from the spec subset shipped in `conveyor.reference`: the status must be one the operation
documents, the content type the real service's, `X-Request-Id` present, and the body must
match the operation's schema made strict (see `strict_schema`): required properties present,
no property the spec lacks, types, enums and formats right, at every depth. Any 4xx/5xx must
be a problem document (`AccountExports`) whose `status` is the HTTP status and whose
`instance` is the `X-Request-Id`.

`install_shape_check(client, mode)` runs the check on every response an httpx client (a
Starlette `TestClient`) receives: "strict" fails the request with an AssertionError,
"report" appends each violation as a JSON line to the file named by
`CONVEYOR_TEST_SHAPE_REPORT`.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import httpx
import httpx2
from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match

from conveyor.reference import marketing_subset

# The test client speaks httpx2, real servers are reached with httpx: both are checked.
Response = httpx.Response | httpx2.Response
Client = httpx.Client | httpx2.Client

API_PREFIX = "/3.0"
JSON_TYPE = "application/json; charset=utf-8"
PROBLEM_TYPE = "application/problem+json; charset=utf-8"
PROBLEM_SCHEMA = "#/components/schemas/AccountExports"
REPORT_ENV = "CONVEYOR_TEST_SHAPE_REPORT"
MODE_ENV = "CONVEYOR_TEST_SHAPE_CHECK"
ANY = "*"

# Properties Conveyor sends that the spec's schema lacks, each with its own schema, keyed by
# (method, spec path template, JSON pointer of the object schema in the spec); "*" matches any
# method or path. Everything else a body holds beyond the spec is a violation.
EXTENSIONS: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {
    # The real service sends `errors: [{field, message}]` with validation failures (Mailchimp's
    # error documentation); the spec's problem schema leaves it out.
    (ANY, ANY, PROBLEM_SCHEMA): {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                "required": ["field", "message"],
            },
        }
    },
    # A member's `full_name`: every real answer carries it (recorded answers in public client
    # code, 2021-2024), the spec's member does not. Only where the spec's member is.
    (ANY, ANY, "#/components/schemas/ListsMembersMembers"): {"full_name": {"type": "string"}},
    # The signing secret for `X-Mailchimp-Signature`, shown once, in the answer to the create
    # (Mailchimp's webhook-signing documentation; the spec predates it).
    ("POST", "/batch-webhooks", "#/components/schemas/BatchWebhooksWebhooks"): {
        "secret": {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    },
    # Conveyor's batch steering (README, "Beyond Mailchimp"), on the batch object wherever it
    # appears, and only when set: when a batch was canceled (ISO time, as `completed_at`),
    # and which batch's failures a retry holds.
    (ANY, ANY, "#/components/schemas/BatchesBatches"): {
        "canceled_at": {"type": "string", "format": "date-time"},
        "retry_of": {"type": "string", "pattern": "^[0-9a-f]{10}$"},
    },
}

# Mistakes in the spec, corrected before checking: pointer -> the schema that replaces it.
ERRATA: dict[str, dict[str, Any]] = {
    # The batch webhook's `_links` is written as an array of arrays of links; every other
    # resource of the spec, the batch included, has a flat array of links, as the
    # `_links` of every real answer (and of Mailchimp's own examples) is.
    "#/components/schemas/BatchWebhooksWebhooks/properties/_links/items": {
        "$ref": "#/components/schemas/Links"
    },
}

# Conveyor's own endpoints beside the spec's, with the content type of their success answers.
# Their error answers are checked as problem documents like any other; their success bodies
# are Conveyor's to define (docs/architecture.md), so only the content type is checked.
EXTENSION_OPERATIONS: dict[tuple[str, str], str] = {
    # The results archive. Mailchimp serves it from a storage URL outside the API; Conveyor
    # serves it under the API root at a signed URL.
    ("GET", "/batches/{batch_id}-response.tar.gz"): "application/gzip",
    # The delivery log of a batch webhook, and redelivery of one delivery.
    ("GET", "/batch-webhooks/{batch_webhook_id}/deliveries"): JSON_TYPE,
    ("POST", "/batch-webhooks/{batch_webhook_id}/deliveries/{delivery_id}/redeliver"): JSON_TYPE,
    # Seeing into a batch and steering it (README, "Beyond Mailchimp"): per-operation results
    # as a collection and as NDJSON, retry of the failures, cancel, live progress events.
    ("GET", "/batches/{batch_id}/operations"): JSON_TYPE,
    ("GET", "/batches/{batch_id}/results.ndjson"): "application/x-ndjson",
    ("POST", "/batches/{batch_id}/retry"): JSON_TYPE,
    ("POST", "/batches/{batch_id}/cancel"): JSON_TYPE,
    ("GET", "/batches/{batch_id}/events"): "text/event-stream; charset=utf-8",
    # The served OpenAPI document (docs/observability.md).
    ("GET", "/openapi.json"): "application/json",
}

Mode = Literal["strict", "report"]
MODES: tuple[Mode, ...] = ("strict", "report")


@dataclass(frozen=True)
class Violation:
    """One way an answer departs from the spec."""

    method: str
    path: str  # as requested, under /3.0
    template: str  # the spec's path template (re-rooted: without /3.0), "" when none matches
    status: int
    rule: str  # "status", "content-type", "request-id", "unexpected-property", "required", …
    where: str  # a JSON path into the body ("$.members[0].stats"), or "header <name>"
    message: str

    def __str__(self) -> str:
        template = f" ({API_PREFIX}{self.template})" if self.template else ""
        return (
            f"{self.method} {self.path}{template} -> {self.status}: "
            f"[{self.rule}] {self.where}: {self.message}"
        )


def format_violations(violations: list[Violation]) -> str:
    lines = [f"{len(violations)} departure(s) from the spec:", *map(str, violations)]
    return "\n  ".join(lines)


# --- the spec ------------------------------------------------------------------------------


@cache
def _spec() -> dict[str, Any]:
    """The shared parsed document; readers only (validators build from their own copies)."""
    return marketing_subset()


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _resolve(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for token in pointer.removeprefix("#/").split("/"):
        node = node[_unescape(token)]
    return node


@cache
def _templates() -> tuple[tuple[str, tuple[str, ...]], ...]:
    paths = [*_spec()["paths"], *(template for _, template in EXTENSION_OPERATIONS)]
    return tuple((path, _segments(path)) for path in dict.fromkeys(paths))


def _segments(path: str) -> tuple[str, ...]:
    return tuple(part for part in path.strip("/").split("/") if part)


def match_template(url_path: str) -> str | None:
    """The spec (or extension) path template a request path under /3.0 falls in, if any.

    Templates are re-rooted as in the spec: `/3.0/lists/abc` falls in `/lists/{list_id}`.
    A trailing slash is ignored; a literal segment beats a placeholder.
    """
    if url_path != API_PREFIX and not url_path.startswith(API_PREFIX + "/"):
        return None
    parts = _segments(url_path.removeprefix(API_PREFIX))
    best: tuple[int, str] | None = None
    for template, segments in _templates():
        if len(segments) != len(parts):
            continue
        literals = 0
        for segment, part in zip(segments, parts, strict=True):
            if _is_placeholder(segment):
                continue
            if "{" in segment:  # a placeholder with literal text around it
                if not _segment_pattern(segment).fullmatch(part):
                    break
            elif segment != part:
                break
            literals += 1
        else:
            if best is None or literals > best[0]:
                best = (literals, template)
    return None if best is None else best[1]


def _is_placeholder(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}") and segment.count("{") == 1


@cache
def _segment_pattern(segment: str) -> re.Pattern[str]:
    literal_parts = re.split(r"\{[^}]+\}", segment)
    return re.compile(".+".join(re.escape(part) for part in literal_parts))


def strict_schema(schema: Any, *, keep_required: bool = True) -> None:
    """Make a schema strict, in place: no property beyond those it declares.

    Every object schema that declares `properties` and says nothing of
    `additionalProperties` gets `additionalProperties: false`. Open maps are left open: those
    declaring `additionalProperties` (`merge_fields`, `interests`: keys are the account's
    merge tags and interest ids) and objects with no `properties` at all. Without
    `keep_required`, `required` is dropped: a body cut down with `fields`/`exclude_fields`
    is checked only for the types of what it kept.
    """
    if not isinstance(schema, dict):
        return
    if "allOf" in schema:
        # `additionalProperties: false` on an allOf part would refuse the other parts'
        # properties; the spec has none today. Should it gain one, strictness needs
        # `unevaluatedProperties` instead.
        raise NotImplementedError("allOf in the spec: make strict_schema use unevaluatedProperties")
    if "properties" in schema and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    if not keep_required:
        schema.pop("required", None)
    for child in schema.get("properties", {}).values():
        strict_schema(child, keep_required=keep_required)
    for key in ("items", "additionalProperties", "not"):
        strict_schema(schema.get(key), keep_required=keep_required)
    for key in ("oneOf", "anyOf", "prefixItems"):
        for child in schema.get(key, []):
            strict_schema(child, keep_required=keep_required)


def response_pointer(method: str, template: str, status: str) -> str:
    media = _escape("application/json")
    return f"#/paths/{_escape(template)}/{method.lower()}/responses/{status}/content/{media}/schema"


@cache
def _validator(method: str, template: str, pointer: str, selected: bool) -> Draft202012Validator:
    document = marketing_subset()  # a private copy: errata, extensions, strictness change it
    for erratum, replacement in ERRATA.items():
        parent, _, last = erratum.rpartition("/")
        _resolve(document, parent)[_unescape(last)] = copy.deepcopy(replacement)
    for (ext_method, ext_template, ext_pointer), properties in EXTENSIONS.items():
        if ext_method in (ANY, method) and ext_template in (ANY, template):
            target = _resolve(document, ext_pointer)
            target["properties"].update(copy.deepcopy(properties))
    schemas = document["components"]["schemas"]
    for schema in schemas.values():
        strict_schema(schema, keep_required=not selected)
    root = _resolve(document, pointer)
    strict_schema(root, keep_required=not selected)
    # The components ride along so that `#/components/schemas/...` resolves from the root.
    return Draft202012Validator(
        {**root, "components": {"schemas": schemas}},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


# --- checking one answer -------------------------------------------------------------------


def _tolerated(error: ValidationError) -> bool:
    # The real service sends "" for a date it does not have (`timestamp_signup`,
    # `last_sub_date`, `campaign_last_sent`, …) where the spec says `format: date-time`.
    # Formats stay checked so that `oneOf` branches such as `first_payment` (a date-time or
    # the constant "") remain distinct.
    if error.validator == "format":
        return bool(error.validator_value == "date-time" and error.instance == "")
    # And "" for the `sms_subscription_status` of a contact without SMS, a value the spec's
    # enum lacks (recorded member answers, 2024).
    return bool(
        error.validator == "enum"
        and error.instance == ""
        and list(error.absolute_path)[-1:] == ["sms_subscription_status"]
    )


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _json_path(parts: Iterable[str | int]) -> str:
    """`$.members[0]._links`: dotted names where they read plainly, brackets otherwise."""
    path = "$"
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _NAME.fullmatch(part):
            path += f".{part}"
        else:
            path += f"[{json.dumps(part)}]"
    return path


def _schema_errors(validator: Draft202012Validator, body: Any) -> Iterator[tuple[str, str, str]]:
    """(rule, where, message) for each way `body` fails the schema."""
    for error in validator.iter_errors(body):
        if _tolerated(error):
            continue
        where = _json_path(error.absolute_path)
        title = error.schema.get("title") if isinstance(error.schema, dict) else None
        of = f" of {title!r}" if title else ""
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            declared = error.schema.get("properties", {})
            for name in sorted(set(error.instance) - set(declared)):
                inside = _json_path([*error.absolute_path, name])
                yield "unexpected-property", inside, f"not a property{of} in the spec"
        elif error.validator == "required":
            yield "required", where, f"{error.message}{of}"
        elif error.validator in ("oneOf", "anyOf") and error.context:
            cause = best_match(error.context)
            yield str(error.validator), where, f"no branch{of} fits: {_short(cause.message)}"
        else:
            yield str(error.validator), where, _short(error.message)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse(body: bytes) -> tuple[bool, Any]:
    try:
        return True, json.loads(body)
    except ValueError:
        return False, None


def check_response(
    method: str,
    url_path: str,
    query: Mapping[str, str],
    status: int,
    body: bytes | None,
    headers: Mapping[str, str],
) -> list[Violation]:
    """Every way one answer departs from the spec.

    `body` is the raw content, or None when it was not read (a binary download). Header
    names are matched case-insensitively.
    """
    method = method.upper()
    template = match_template(url_path)
    found: list[tuple[str, str, str]] = []
    lowered = {name.lower(): value for name, value in headers.items()}
    request_id = lowered.get("x-request-id", "")
    content_type = lowered.get("content-type", "")
    if not request_id:
        found.append(("request-id", "header X-Request-Id", "missing or empty"))

    def expect_type(expected: str) -> None:
        if content_type != expected:
            found.append(
                ("content-type", "header Content-Type", f"{content_type!r}, not {expected!r}")
            )

    def expect_json(pointer: str, selected: bool) -> Any:
        if body is None:
            return None
        parsed, value = _parse(body)
        if not parsed:
            found.append(("json", "$", f"the body is not JSON: {_short(repr(body[:200]))}"))
            return None
        validator = _validator(method, template or ANY, pointer, selected)
        found.extend(_schema_errors(validator, value))
        return value

    if method == "HEAD":
        # HTTP's HEAD: GET's status and headers without the body (RFC 9110), on every path
        # that answers GET; the spec, like Mailchimp's, leaves it implicit.
        answers_get = template is not None and (
            "get" in _spec()["paths"].get(template, {}) or ("GET", template) in EXTENSION_OPERATIONS
        )
        if status < 400 and not answers_get:
            found.append(("unknown-operation", "method", "HEAD answered where no GET is"))
        if body:
            found.append(("body", "$", "a HEAD answer carries no body"))
    elif status >= 400:
        expect_type(PROBLEM_TYPE)
        problem = expect_json(PROBLEM_SCHEMA, selected=False)
        if isinstance(problem, dict):
            if "status" in problem and problem["status"] != status:
                found.append(("status", "$.status", f"{problem['status']!r}, not {status}"))
            if "instance" in problem and problem["instance"] != request_id:
                found.append(
                    (
                        "request-id",
                        "$.instance",
                        f"{problem['instance']!r} != X-Request-Id {request_id!r}",
                    )
                )
    elif template is None:
        found.append(("unknown-path", "path", "no operation of the spec nor of Conveyor's"))
    elif (method, template) in EXTENSION_OPERATIONS:
        expect_type(EXTENSION_OPERATIONS[(method, template)])
    else:
        operation = _spec()["paths"].get(template, {}).get(method.lower())
        declared = {} if operation is None else operation["responses"]
        answer = declared.get(str(status))
        if operation is None:
            found.append(("unknown-operation", "method", f"the spec has no {method} here"))
        elif answer is None:
            documented = sorted(key for key in declared if key != "default")
            found.append(("status", "status", f"{status}: the spec documents {documented}"))
        elif not answer.get("content"):  # 204: `content` is absent or empty
            if body:
                found.append(
                    ("body", "$", f"an empty answer expected, got {_short(repr(body[:200]))}")
                )
        else:
            expect_type(JSON_TYPE)
            selected = "fields" in query or "exclude_fields" in query
            expect_json(response_pointer(method, template, str(status)), selected)
    return [
        Violation(method, url_path, template or "", status, rule, where, message)
        for rule, where, message in found
    ]


# --- hooking it into a client --------------------------------------------------------------


# Streams end when the server ends them (an event stream when its batch finishes): reading one
# here, inside the client's response hook, would hold the caller until then.
_STREAMED = ("text/event-stream", "application/x-ndjson")


def _worth_reading(response: Response) -> bool:
    content_type = response.headers.get("content-type", "")
    if content_type.startswith(_STREAMED):
        return False
    return not content_type or "json" in content_type or content_type.startswith("text/")


def check_httpx_response(response: Response) -> list[Violation]:
    if not response.request.url.path.startswith("/3.0"):
        return []  # Conveyor's own pages (health, dashboard, metrics): not the API's shapes
    body: bytes | None = None
    if _worth_reading(response):
        body = response.read()
    request = response.request
    method = request.method
    override = request.headers.get("x-http-method-override")
    if method == "POST" and override:
        method = override.strip().upper()  # the server acts as the named method
    return check_response(
        method,
        request.url.path,
        request.url.params,
        response.status_code,
        body,
        response.headers,
    )


def install_shape_check(client: Client, mode: Mode = "strict", report: Path | None = None) -> None:
    """Check every answer `client` receives against the spec.

    "strict": a departure raises AssertionError from the request call. "report": each
    departure is appended as a JSON line to `report` (default: the file named by
    `CONVEYOR_TEST_SHAPE_REPORT`), with the running test's id, and the test goes on.
    """
    if mode == "report" and report is None:
        named = os.environ.get(REPORT_ENV)
        if not named:
            raise ValueError(f'mode "report" needs a file: set {REPORT_ENV}')
        report = Path(named)

    def on_response(response: Response) -> None:
        violations = check_httpx_response(response)
        if not violations:
            return
        if mode == "strict":
            raise AssertionError(format_violations(violations))
        assert report is not None
        test = os.environ.get("PYTEST_CURRENT_TEST", "")
        lines = "".join(json.dumps({"test": test, **asdict(v)}) + "\n" for v in violations)
        with report.open("a", encoding="utf-8") as handle:
            handle.write(lines)

    hooks = client.event_hooks
    client.event_hooks = {**hooks, "response": [*hooks.get("response", []), on_response]}


def mode_from_env(default: Mode | None) -> Mode | None:
    """`CONVEYOR_TEST_SHAPE_CHECK=strict|report|off`; unset, "report" when
    `CONVEYOR_TEST_SHAPE_REPORT` names a file, else `default` (None: no check)."""
    named = os.environ.get(MODE_ENV, "").strip().lower()
    if named == "off":
        return None
    for mode in MODES:
        if named == mode:
            return mode
    if named:
        raise ValueError(f"{MODE_ENV}={named!r}: expected strict, report or off")
    return "report" if os.environ.get(REPORT_ENV) else default


def install_shape_check_from_env(client: Client, default: Mode | None = "strict") -> None:
    """The one call a client fixture makes: the mode comes from the environment."""
    mode = mode_from_env(default)
    if mode is not None:
        install_shape_check(client, mode)
