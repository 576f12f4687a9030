"""The batch webhook's form body, byte for byte as Mailchimp sends it (docs/compatibility.md).

`type=batch_operation_completed&fired_at=2017-02-10 14:59:37&data[id]=…`: a query-string
style form, `fired_at` without `T` or zone, numbers as strings, `_links` flattened by index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

EVENT_TYPE = "batch_operation_completed"


@dataclass(frozen=True, slots=True)
class CompletedBatch:
    """What the webhook tells about a batch, snapshotted when it finished."""

    id: str
    status: str
    total_operations: int
    finished_operations: int
    errored_operations: int
    submitted_at: str
    completed_at: str
    links: Sequence[Mapping[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "total_operations": self.total_operations,
            "finished_operations": self.finished_operations,
            "errored_operations": self.errored_operations,
            "submitted_at": self.submitted_at,
            "completed_at": self.completed_at,
            "links": [dict(link) for link in self.links],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CompletedBatch:
        return cls(
            id=data["id"],
            status=data["status"],
            total_operations=int(data["total_operations"]),
            finished_operations=int(data["finished_operations"]),
            errored_operations=int(data["errored_operations"]),
            submitted_at=data["submitted_at"],
            completed_at=data["completed_at"],
            links=[dict(link) for link in data["links"]],
        )


def fired_at_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def form_fields(
    batch: CompletedBatch, response_body_url: str, fired_at: datetime
) -> list[tuple[str, str]]:
    fields = [
        ("type", EVENT_TYPE),
        ("fired_at", fired_at_text(fired_at)),
        ("data[id]", batch.id),
        ("data[status]", batch.status),
        ("data[total_operations]", str(batch.total_operations)),
        ("data[finished_operations]", str(batch.finished_operations)),
        ("data[errored_operations]", str(batch.errored_operations)),
        ("data[submitted_at]", batch.submitted_at),
        ("data[completed_at]", batch.completed_at),
        ("data[response_body_url]", response_body_url),
    ]
    for index, link in enumerate(batch.links):
        for key in ("rel", "href", "method", "targetSchema", "schema"):
            if key in link:
                fields.append((f"data[_links][{index}][{key}]", link[key]))
    return fields


def encode_form(fields: Sequence[tuple[str, str]]) -> bytes:
    return urlencode(fields).encode("ascii")
