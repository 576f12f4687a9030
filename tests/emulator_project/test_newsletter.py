# test_newsletter.py: needs `pip install conveyor mailchimp-marketing pytest`, nothing else.
import hashlib
import json
import time
from typing import Any

import pytest
from mailchimp_marketing.api_client import ApiClientError

from conveyor.testing import Conveyor


def subscribe_all(client: Any, list_id: str, emails: list[str]) -> Any:
    """The code under test: one batch of upserts, waited for."""
    operations = [
        {
            "method": "PUT",
            "path": f"/lists/{list_id}/members/{hashlib.md5(email.lower().encode()).hexdigest()}",
            "operation_id": email,
            "body": json.dumps({"email_address": email, "status_if_new": "subscribed"}),
        }
        for email in emails
    ]
    batch = client.batches.start({"operations": operations})
    while batch["status"] != "finished":
        time.sleep(0.05)
        batch = client.batches.status(batch["id"])
    return batch


def test_subscribers_go_in_one_batch(conveyor: Conveyor) -> None:
    client = conveyor.mailchimp_client()
    list_id = client.lists.create_list(
        {
            "name": "Newsletter",
            "permission_reminder": "You signed up on our site.",
            "email_type_option": False,
            "contact": {
                "company": "Acme",
                "address1": "1 Main St",
                "city": "Springfield",
                "state": "IL",
                "zip": "62701",
                "country": "US",
            },
            "campaign_defaults": {
                "from_name": "Acme",
                "from_email": "news@acme.org",
                "subject": "News",
                "language": "en",
            },
        }
    )["id"]

    batch = subscribe_all(client, list_id, ["ann@example.org", "bob@example.org"])

    assert batch["errored_operations"] == 0
    upserts = conveyor.requests("PUT", "/3.0/lists/*/members/*")
    assert [r["operation_id"] for r in upserts] == ["ann@example.org", "bob@example.org"]
    assert {r["batch_id"] for r in upserts} == {batch["id"]}
    assert client.lists.get_list(list_id)["stats"]["member_count"] == 2


def test_a_rate_limit_reaches_the_caller_once(conveyor: Conveyor) -> None:
    client = conveyor.mailchimp_client()
    conveyor.fault("GET", "/3.0/ping", status=429, times=1)

    with pytest.raises(ApiClientError) as refused:
        client.ping.get()
    assert refused.value.status_code == 429
    assert json.loads(refused.value.text)["title"] == "TooManyRequests"
    assert client.ping.get() == {"health_status": "Everything's Chimpy!"}


def test_finished_batches_are_gone_after_seven_days(conveyor: Conveyor) -> None:
    client = conveyor.mailchimp_client()
    batch = client.batches.start({"operations": [{"method": "GET", "path": "/ping"}]})

    conveyor.advance(8 * 24 * 3600)

    with pytest.raises(ApiClientError) as gone:
        client.batches.status(batch["id"])
    assert gone.value.status_code == 404
