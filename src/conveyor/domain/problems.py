"""Mailchimp-style problem documents (RFC 7807 shape, Mailchimp's titles and wording)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ERROR_DOCS_URL = "https://mailchimp.com/developer/marketing/docs/errors/"
PROBLEM_CONTENT_TYPE = "application/problem+json; charset=utf-8"


@dataclass
class FieldError:
    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass
class Problem(Exception):
    """An error answer. Raised by handlers; rendered by whichever adapter called them."""

    status: int
    title: str
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    # HTTP headers the answer carries (`Allow` on a 405); a batch result has none.
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.status} {self.title}: {self.detail}")

    def to_document(self, instance: str) -> dict[str, Any]:
        document: dict[str, Any] = {
            "type": ERROR_DOCS_URL,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.errors:
            document["errors"] = [error.to_dict() for error in self.errors]
        return document


VALIDATION_DETAIL = (
    "The resource submitted could not be validated. "
    "For field-specific details, see the 'errors' array."
)


def not_found() -> Problem:
    return Problem(404, "Resource Not Found", "The requested resource could not be found.")


METHOD_NOT_ALLOWED_DETAIL = (
    "The requested method and resource are not compatible. "
    "See the Allow header for this resource's available methods."
)
# The order the real service lists methods in an `Allow` header.
_METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")


def method_not_allowed(allowed: Iterable[str] = ()) -> Problem:
    """405; `allowed` are the methods the resource serves, for the `Allow` header."""
    methods = sorted(
        {m.upper() for m in allowed} - {"HEAD"},
        key=lambda m: (_METHOD_ORDER.index(m) if m in _METHOD_ORDER else len(_METHOD_ORDER), m),
    )
    headers = {"Allow": ", ".join(methods)} if methods else {}
    return Problem(405, "Method Not Allowed", METHOD_NOT_ALLOWED_DETAIL, headers=headers)


METHOD_OVERRIDE_DETAIL = "You can only use the X-HTTP-Method-Override header with the POST method."


def invalid_method_override(detail: str = METHOD_OVERRIDE_DETAIL) -> Problem:
    return Problem(422, "Invalid Method Override", detail)


REQUESTED_FIELDS_DETAIL = "The fields requested from this resource are invalid."


def requested_fields_invalid(errors: list[FieldError]) -> Problem:
    return Problem(422, "Requested Fields Invalid", REQUESTED_FIELDS_DETAIL, errors)


def json_parse_error(reason: str = "") -> Problem:
    detail = "We encountered an unspecified JSON parsing error."
    if reason:
        detail = f"{detail} {reason}"
    return Problem(400, "JSON Parse Exception", detail)


def invalid_resource(errors: list[FieldError], detail: str = VALIDATION_DETAIL) -> Problem:
    return Problem(400, "Invalid Resource", detail, errors)


def bad_request(detail: str) -> Problem:
    return Problem(400, "Bad Request", detail)


def fake_email(email: str) -> Problem:
    return Problem(
        400,
        "Invalid Resource",
        f"{email} looks fake or invalid, please enter a real email address.",
    )


def member_exists(email: str) -> Problem:
    return Problem(
        400,
        "Member Exists",
        f"{email} is already a list member. Use PUT to insert or update list members.",
    )


def forgotten_email(email: str) -> Problem:
    return Problem(
        400,
        "Forgotten Email Not Subscribed",
        f"{email} was permanently deleted and cannot be re-imported. "
        "The contact must re-subscribe to get back on the list.",
    )


def api_key_missing() -> Problem:
    return Problem(
        401,
        "API Key Missing",
        "Your request did not include an API key.",
    )


def api_key_invalid() -> Problem:
    return Problem(
        401,
        "API Key Invalid",
        "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
    )


def too_many_requests(detail: str) -> Problem:
    return Problem(429, "TooManyRequests", detail)


def internal_error() -> Problem:
    return Problem(
        500,
        "InternalServerError",
        "An unexpected internal error has occurred. Please contact Support for more information.",
    )


def payload_too_large(limit: int) -> Problem:
    return Problem(
        413,
        "Request Entity Too Large",
        f"The request body is larger than the limit of {limit} bytes.",
    )


# Names accepted by the `X-Trigger-Error` header, as on the real service.
TRIGGERED_ERRORS: dict[str, tuple[int, str, str]] = {
    "BadRequest": (400, "Bad Request", "The request could not be processed."),
    "InvalidAction": (400, "Invalid Action", "The action requested was not valid."),
    "InvalidResource": (400, "Invalid Resource", VALIDATION_DETAIL),
    "JSONParseError": (
        400,
        "JSON Parse Exception",
        "We encountered an unspecified JSON parsing error.",
    ),
    "APIKeyMissing": (401, "API Key Missing", "Your request did not include an API key."),
    "APIKeyInvalid": (401, "API Key Invalid", api_key_invalid().detail),
    "Forbidden": (403, "Forbidden", "You don't have permission to access this resource."),
    "UserDisabled": (403, "User Disabled", "This account has been disabled."),
    "WrongDatacenter": (403, "Wrong Datacenter", "The API key is for another datacenter."),
    "ResourceNotFound": (404, "Resource Not Found", not_found().detail),
    "MethodNotAllowed": (405, "Method Not Allowed", METHOD_NOT_ALLOWED_DETAIL),
    "ResourceNestingTooDeep": (
        414,
        "Resource Nesting Too Deep",
        "The resource nesting is too deep.",
    ),
    "InvalidMethodOverride": (422, "Invalid Method Override", METHOD_OVERRIDE_DETAIL),
    "RequestedFieldsInvalid": (422, "Requested Fields Invalid", REQUESTED_FIELDS_DETAIL),
    "TooManyRequests": (
        429,
        "TooManyRequests",
        "You have exceeded the limit of 10 simultaneous connections.",
    ),
    "InternalServerError": (500, "InternalServerError", internal_error().detail),
    "ComplianceRelated": (403, "Compliance Related", "This account is under compliance review."),
}


def triggered(name: str) -> Problem | None:
    spec = TRIGGERED_ERRORS.get(name.strip())
    if spec is None:
        return None
    return Problem(*spec)
