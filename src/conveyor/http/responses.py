"""JSON and problem responses with the real service's content types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from conveyor.domain.problems import PROBLEM_CONTENT_TYPE, Problem

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def reply_response(
    status: int, body: Any, request_id: str, headers: Mapping[str, str] | None = None
) -> Response:
    headers = {**(headers or {}), "X-Request-Id": request_id}
    if status == 204 or body is None:
        return Response(status_code=status, headers=headers)
    media = PROBLEM_CONTENT_TYPE if status >= 400 and _is_problem(body) else JSON_CONTENT_TYPE
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=media)


def problem_response(problem: Problem, request_id: str) -> Response:
    return reply_response(
        problem.status, problem.to_document(request_id), request_id, problem.headers
    )


def _is_problem(body: Any) -> bool:
    return isinstance(body, dict) and "type" in body and "title" in body
