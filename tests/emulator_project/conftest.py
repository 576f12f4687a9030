"""The project's own fixtures, over the plugin's `conveyor` fixture."""

from __future__ import annotations

from typing import Any

import pytest

AUDIENCE: dict[str, Any] = {
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


@pytest.fixture
def mailchimp(conveyor: Any) -> Any:
    """The official client, pointed at the emulator."""
    return conveyor.mailchimp_client()


@pytest.fixture
def audience(conveyor: Any) -> str:
    """An audience with a PLAN merge field and one member, loaded as fixtures."""
    loaded = conveyor.load(
        {
            "lists": [
                {
                    **AUDIENCE,
                    "merge_fields": [{"tag": "PLAN", "name": "Plan", "type": "text"}],
                    "members": [{"email_address": "old@example.org", "status": "subscribed"}],
                }
            ]
        }
    )
    return str(loaded["lists"][0]["id"])
