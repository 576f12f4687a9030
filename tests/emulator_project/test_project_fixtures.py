"""The project's own fixtures (conftest.py) and both official clients, over the plugin."""

from __future__ import annotations

from typing import Any

import pytest
from mailchimp3.mailchimpclient import MailChimpError


def test_the_fixture_is_reset_before_each_test_a(conveyor: Any, mailchimp: Any) -> None:
    assert mailchimp.lists.get_all_lists()["total_items"] == 0
    conveyor.fault(status=500, times=99)  # left behind on purpose


def test_the_fixture_is_reset_before_each_test_b(conveyor: Any, mailchimp: Any) -> None:
    assert conveyor.faults() == []
    assert conveyor.requests() == []
    assert mailchimp.lists.get_all_lists()["total_items"] == 0


def test_what_the_plugin_says_about_itself(conveyor: Any) -> None:
    assert conveyor.base_url.endswith("/3.0")
    assert conveyor.api_key.endswith(f"-{conveyor.server}")


def test_loaded_fixtures_are_seen_by_mailchimp3(conveyor: Any, audience: str) -> None:
    client = conveyor.mailchimp3_client()
    members = client.lists.members.all(audience, get_all=True)
    assert [m["email_address"] for m in members["members"]] == ["old@example.org"]
    fields = client.lists.merge_fields.all(audience, get_all=True)["merge_fields"]
    assert "PLAN" in [f["tag"] for f in fields]


def test_mailchimp3_sees_a_fault_in_a_batch(conveyor: Any, audience: str) -> None:
    client = conveyor.mailchimp3_client()
    conveyor.fault("POST", "/3.0/lists/*/members", status=503, where="batch", times=1)
    batch = client.batch_operations.create(
        data={
            "operations": [
                {
                    "method": "POST",
                    "path": f"lists/{audience}/members",
                    "operation_id": f"new-{n}",
                    "body": f'{{"email_address": "new{n}@example.org", "status": "subscribed"}}',
                }
                for n in range(3)
            ]
        }
    )
    conveyor.settle()
    done = client.batch_operations.get(batch_id=batch["id"])
    assert (done["status"], done["errored_operations"]) == ("finished", 1)
    ran = conveyor.requests(batch_id=batch["id"])
    assert [(r["operation_id"], r["status"]) for r in ran] == [
        ("new-0", 503),
        ("new-1", 200),
        ("new-2", 200),
    ]


def test_mailchimp3_gets_mailchimps_401_for_a_malformed_key(conveyor: Any) -> None:
    from mailchimp3 import MailChimp

    # mailchimp3 checks the 32 hex digits itself; the datacenter part is malformed.
    client = MailChimp(mc_api=f"{'0' * 32}-x")
    client.base_url = conveyor.base_url + "/"
    with pytest.raises(MailChimpError) as refused:
        client.ping.get()
    assert refused.value.args[0]["status"] == 401
