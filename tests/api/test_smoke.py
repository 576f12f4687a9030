from __future__ import annotations

from tests.conftest import ApiUser


def test_ping(api: ApiUser) -> None:
    response = api.client.get("/3.0/ping")
    assert response.status_code == 200
    assert response.json() == {"health_status": "Everything's Chimpy!"}


def test_add_member(api: ApiUser, list_id: str) -> None:
    response = api.client.post(
        f"/3.0/lists/{list_id}/members",
        json={"email_address": "Ann@Example.org", "status": "subscribed", "tags": ["vip"]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "7f8b1d1b5b1d7d0c0e4f2c6f6a3e3b52" or len(body["id"]) == 32
    assert body["tags"][0]["name"] == "vip"
