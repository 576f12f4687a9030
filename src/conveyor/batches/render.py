"""The batch object exactly as the spec shapes it (`BatchesBatches`), plus Conveyor's two
extensions where they apply: `canceled_at` on a canceled batch, `retry_of` on a retry."""

from __future__ import annotations

from typing import Any

from conveyor.domain.links import schema_url
from conveyor.marketing.common import link
from conveyor.storage.batches import BatchRow


def render_batch(batch: BatchRow, api_root: str, response_body_url: str) -> dict[str, Any]:
    href = f"{api_root}/batches/{batch.id}"
    rendered: dict[str, Any] = {
        "id": batch.id,
        "status": batch.status,
        "total_operations": batch.total_operations,
        "finished_operations": batch.finished_operations,
        "errored_operations": batch.errored_operations,
        "submitted_at": batch.submitted_at,
        "completed_at": batch.completed_at,
        "response_body_url": response_body_url,
        "_links": [
            link(
                "parent",
                f"{api_root}/batches",
                "GET",
                schema_url(api_root, "Definitions/Batches/CollectionResponse"),
                schema_url(api_root, "CollectionLinks/Batches"),
            ),
            link("self", href, "GET", schema_url(api_root, "Definitions/Batches/Response")),
            link("delete", href, "DELETE"),
        ],
    }
    # Only when set: every other batch keeps exactly Mailchimp's shape.
    if batch.canceled_at is not None:
        rendered["canceled_at"] = batch.canceled_at
    if batch.retry_of is not None:
        rendered["retry_of"] = batch.retry_of
    return rendered


def render_batch_list(rendered: list[dict[str, Any]], total: int, api_root: str) -> dict[str, Any]:
    return {
        "batches": rendered,
        "total_items": total,
        "_links": [
            link(
                "self",
                f"{api_root}/batches",
                "GET",
                schema_url(api_root, "Definitions/Batches/CollectionResponse"),
            ),
            link(
                "create",
                f"{api_root}/batches",
                "POST",
                schema_url(api_root, "Definitions/Batches/Response"),
                schema_url(api_root, "Definitions/Batches/POST"),
            ),
        ],
    }
