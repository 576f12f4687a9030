from __future__ import annotations

import io
import json
from typing import Any

from conveyor.domain.archive import iter_archive
from conveyor.runtime.embedded import EmbeddedRuntime
from tests.conftest import LIST_BODY, ApiUser


def test_batch_runs_to_finished_archive(batch_api: ApiUser, runtime: EmbeddedRuntime) -> None:
    client = batch_api.client
    list_id = client.post("/3.0/lists", json=LIST_BODY).json()["id"]
    operations: list[dict[str, Any]] = [
        {
            "method": "POST",
            "path": f"lists/{list_id}/members",
            "operation_id": f"op-{i}",
            "body": json.dumps({"email_address": f"user{i}@example.org", "status": "subscribed"}),
        }
        for i in range(50)
    ]
    operations.append(
        {"method": "post", "path": f"/lists/{list_id}/members", "body": {"email_address": "x"}}
    )
    submitted = client.post("/3.0/batches", json={"operations": operations})
    assert submitted.status_code == 200, submitted.text
    batch = submitted.json()
    assert batch["status"] == "pending"
    assert batch["total_operations"] == 51
    runtime.join()
    status = client.get(f"/3.0/batches/{batch['id']}").json()
    assert status["status"] == "finished"
    assert status["finished_operations"] == 51
    assert status["errored_operations"] == 1
    download = client.get(status["response_body_url"], auth=None)
    assert download.status_code == 200
    results = list(iter_archive(io.BytesIO(download.content)))
    assert len(results) == 51
    assert sorted(r.operation_id or "" for r in results)[1:] == sorted(f"op-{i}" for i in range(50))
