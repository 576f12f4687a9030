"""Every batch extension answers only the batch's own account, and nothing of a batch that is
gone: 404 for another account's key, an unknown id, a purged or a deleted batch."""

from __future__ import annotations

import pytest

from conveyor.composition import Services
from conveyor.domain.clock import OffsetClock
from tests.batches.support import assert_problem, drive, submit
from tests.conftest import ApiUser

# (method, path under the batch); each must answer 404 for a batch the caller cannot see.
EXTENSIONS = [
    ("GET", "operations"),
    ("GET", "results.ndjson"),
    ("POST", "retry"),
    ("POST", "cancel"),
    ("GET", "events"),
]
IDS = [f"{method} {path}" for method, path in EXTENSIONS]


def finished_batch_with_a_failure(api: ApiUser, services: Services) -> str:
    batch = submit(api.client, [{"method": "GET", "path": "/lists/nope"}])
    drive(services, batch["id"])
    return str(batch["id"])


@pytest.mark.parametrize(("method", "path"), EXTENSIONS, ids=IDS)
def test_another_accounts_key_finds_nothing(
    api: ApiUser, other_api: ApiUser, services: Services, method: str, path: str
) -> None:
    batch_id = finished_batch_with_a_failure(api, services)
    response = other_api.client.request(method, f"/3.0/batches/{batch_id}/{path}")
    assert_problem(response, 404, "Resource Not Found")
    # The owner's view is untouched: no retry made, no cancel recorded.
    owner = api.client.get(f"/3.0/batches/{batch_id}").json()
    assert "canceled_at" not in owner
    assert api.client.get("/3.0/batches").json()["total_items"] == 1


@pytest.mark.parametrize(("method", "path"), EXTENSIONS, ids=IDS)
def test_a_purged_batch_is_gone(
    api: ApiUser, services: Services, clock: OffsetClock, method: str, path: str
) -> None:
    batch_id = finished_batch_with_a_failure(api, services)
    clock.advance(services.settings.batches.retention_seconds + 1)
    assert services.engine.purge_expired() == 1
    response = api.client.request(method, f"/3.0/batches/{batch_id}/{path}")
    assert_problem(response, 404, "Resource Not Found")


@pytest.mark.parametrize(("method", "path"), EXTENSIONS, ids=IDS)
def test_a_deleted_or_unknown_batch_is_404(
    api: ApiUser, services: Services, method: str, path: str
) -> None:
    batch_id = finished_batch_with_a_failure(api, services)
    assert api.client.delete(f"/3.0/batches/{batch_id}").status_code == 204
    for gone in (batch_id, "0123456789"):
        response = api.client.request(method, f"/3.0/batches/{gone}/{path}")
        assert_problem(response, 404, "Resource Not Found")


@pytest.mark.parametrize(("method", "path"), EXTENSIONS, ids=IDS)
def test_every_extension_needs_a_key(
    api: ApiUser, services: Services, method: str, path: str
) -> None:
    batch_id = finished_batch_with_a_failure(api, services)
    # auth=None: this request only, without the client's credentials.
    url = f"/3.0/batches/{batch_id}/{path}"
    response = api.client.request(method, url, auth=None)  # type: ignore[arg-type]
    assert_problem(response, 401, "API Key Missing")
