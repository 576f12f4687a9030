"""Member answers are stored without their links (domain/stored_response.py), and every
reader gets them back whole: the archive, the NDJSON results, the operations view."""

from __future__ import annotations

from sqlalchemy import select

from conveyor.composition import Services
from conveyor.storage.tables import batch_results
from tests.batches.steer_support import archive_as_lines, ndjson_lines
from tests.batches.support import (
    create_list,
    drive,
    fetch_archive,
    get_batch,
    member_posts,
    response_of,
    submit,
)
from tests.conftest import ApiUser


def test_member_answers_are_stored_short_and_read_back_whole(
    api: ApiUser, services: Services
) -> None:
    client = api.client
    list_id = create_list(client)
    operations = [
        *member_posts(list_id, 5),
        {"method": "GET", "path": f"/lists/{list_id}/members/nobody", "operation_id": "404"},
    ]
    batch = submit(client, operations)
    drive(services, batch["id"])
    done = get_batch(client, batch["id"])

    with services.database.read() as conn:
        stored = conn.execute(
            select(batch_results.c.response)
            .where(batch_results.c.batch_id == batch["id"])
            .order_by(batch_results.c.seq)
        ).scalars()
        sizes = [len(response) for response in stored]
    # Each add's answer is ~2.3 KB; its links are most of it and stay out of the row.
    assert all(size < 1_000 for size in sizes[:5]), sizes

    archive = fetch_archive(client, done)
    answers = [response_of(result) for result in archive.results]
    for i, answer in enumerate(answers[:5]):
        # Exactly what the API answers for that member now (nothing changed it since).
        direct = client.get(f"/3.0/lists/{list_id}/members/{answer['id']}")
        assert direct.status_code == 200, direct.text
        assert answer == direct.json(), i
        assert [link["rel"] for link in answer["_links"]][:2] == ["self", "parent"]
    assert answers[5]["status"] == 404

    assert ndjson_lines(client, batch["id"]) == archive_as_lines(archive)
    view = client.get(f"/3.0/batches/{batch['id']}/operations").json()
    assert [item["response"] for item in view["operations"]] == answers
