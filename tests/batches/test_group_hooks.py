"""The engine's hooks: observers see each committed operation once, interceptions answer."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from conveyor.batches.group_hooks import Intercepted, RanOperation
from conveyor.composition import Services
from conveyor.domain.accounts import Account
from conveyor.runtime.embedded import EmbeddedRuntime
from tests.batches.support import create_list, fetch_archive, get_batch, member_posts, submit
from tests.conftest import ApiUser


class Recorder:
    def __init__(self, *, refuse_path_part: str | None = None) -> None:
        self.ran: list[RanOperation] = []
        self.started: list[str] = []
        self.refuse_path_part = refuse_path_part

    def intercepts(self, account: Account) -> bool:
        return self.refuse_path_part is not None

    def before_operation(
        self, account: Account, batch_id: str, method: str, path: str
    ) -> Intercepted | None:
        if self.refuse_path_part and self.refuse_path_part in path:
            body = {"title": "Service Unavailable", "status": 503, "detail": "fault"}
            return Intercepted(503, orjson.dumps(body).decode())
        return None

    def before_start(self, batch_id: str) -> None:
        self.started.append(batch_id)

    def after_commit(self, account: Account, batch_id: str, ran: Sequence[RanOperation]) -> None:
        self.ran.extend(ran)


def test_an_observer_sees_every_committed_operation_once(
    batch_api: ApiUser, runtime: EmbeddedRuntime, services: Services
) -> None:
    recorder = Recorder()
    services.group_hooks.hooks.append(recorder)
    list_id = create_list(batch_api.client)
    operations = member_posts(list_id, 45)
    batch = submit(batch_api.client, operations)
    runtime.join()
    assert recorder.started == [batch["id"]]
    assert sorted(op.seq for op in recorder.ran) == list(range(45))
    assert {op.operation_id for op in recorder.ran} == {op["operation_id"] for op in operations}
    assert {op.status_code for op in recorder.ran} == {200}


def test_an_interception_answers_in_place_of_the_operation(
    batch_api: ApiUser, runtime: EmbeddedRuntime, services: Services
) -> None:
    services.group_hooks.hooks.append(Recorder(refuse_path_part="/members"))
    list_id = create_list(batch_api.client)
    batch = submit(batch_api.client, member_posts(list_id, 5))
    runtime.join()
    done = get_batch(batch_api.client, batch["id"])
    assert done["errored_operations"] == 5
    archive = fetch_archive(batch_api.client, done)
    assert {result["status_code"] for result in archive.results} == {503}
    members = batch_api.client.get(f"/3.0/lists/{list_id}/members").json()
    assert members["total_items"] == 0
