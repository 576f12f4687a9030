"""How large one batch result may be, and what stands in for a larger one.

One operation is held to one request's size (domain/operation_limits.py), but its answer is
not: a GET of a collection page in a batch may gather a thousand large members. A result over
the cap is replaced, so no result row, page of the operations view or archive file carries
more than the cap (docs/security.md, "Size inside batches").
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from conveyor.domain.problems import Problem

TITLE = "Response Too Large"


def capped_response(
    method: str,
    status_code: int,
    response: str,
    *,
    max_bytes: int,
    new_instance: Callable[[], str],
) -> tuple[int, str]:
    """The result as it is, or a small problem document in its place when it is too large.

    `new_instance` names the problem's instance, asked for only when one is made.
    A GET changed nothing, so it fails (400) and may be asked again for less. Any other
    method may have changed data: its status code stays, so a client never retries an effect
    that happened, and the body says how to read what the operation left.
    """
    # UTF-8 spends at most four bytes on a character: most answers are decided by length.
    if len(response) <= max_bytes // 4 or len(response.encode("utf-8")) <= max_bytes:
        return status_code, response
    size = len(response.encode("utf-8"))
    if method == "GET":
        detail = (
            f"The answer is {size:,} bytes, more than the {max_bytes:,} a batch result may "
            "hold. Ask for less: a smaller `count`, or `fields`."
        )
        problem = Problem(400, TITLE, detail)
    else:
        detail = (
            f"The operation was applied, but its answer is {size:,} bytes, more than the "
            f"{max_bytes:,} a batch result may hold. Read the resource with a GET and `fields`."
        )
        problem = Problem(status_code, TITLE, detail)
    return problem.status, orjson.dumps(problem.to_document(new_instance())).decode()
