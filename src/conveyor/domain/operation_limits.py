"""How large one operation of a batch may be: what one request may be, and no more.

A batch body may be up to 1 GiB, but one of its operations is one API call: without these
limits a single operation could carry a body or an `operation_id` of hundreds of megabytes,
which every result, page of the operations view and archive would then carry too
(docs/security.md, "Size inside batches").
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.domain.operations import InvalidBatchBody, Operation

# UTF-8 spends at most 4 bytes on a character: text this short cannot be over a byte limit,
# and most bodies are decided without encoding them.
_MAX_UTF8_BYTES_PER_CHAR = 4


@dataclass(frozen=True, slots=True)
class OperationLimits:
    body_bytes: int
    operation_id_chars: int
    path_chars: int


def check_operation_size(operation: Operation, index: int, limits: OperationLimits) -> None:
    """Raise `InvalidBatchBody` naming `operations[index]` when one part is too large."""
    name = f"operations[{index}]"
    body = operation.body
    if body is not None and len(body) * _MAX_UTF8_BYTES_PER_CHAR > limits.body_bytes:
        size = len(body.encode("utf-8", "surrogatepass"))
        if size > limits.body_bytes:
            raise InvalidBatchBody(
                f"{name}.body is {size:,} bytes; an operation's body may be at most "
                f"{limits.body_bytes:,} bytes, as a request's body.",
                field=f"{name}.body",
                index=index,
            )
    operation_id = operation.operation_id
    if operation_id is not None and len(operation_id) > limits.operation_id_chars:
        raise InvalidBatchBody(
            f"{name}.operation_id is {len(operation_id):,} characters; "
            f"it may be at most {limits.operation_id_chars:,}.",
            field=f"{name}.operation_id",
            index=index,
        )
    path_length = len(operation.path)
    if operation.params:
        path_length += sum(len(key) + len(value) + 2 for key, value in operation.params.items())
    if path_length > limits.path_chars:
        raise InvalidBatchBody(
            f"{name}.path and params are {path_length:,} characters; together they may be at "
            f"most {limits.path_chars:,}, as a request's URL.",
            field=f"{name}.path",
            index=index,
        )
