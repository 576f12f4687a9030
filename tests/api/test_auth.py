"""Authentication: HTTP Basic with any user name, Bearer, and the two 401 problems."""

from __future__ import annotations

import base64

import pytest

from conveyor.composition import Services
from conveyor.domain.clock import OffsetClock
from tests.api.conftest import ClientFactory
from tests.api.support import assert_json, assert_problem
from tests.conftest import ApiUser, new_account_key

INVALID_DETAIL = "Your API key may be invalid, or you've attempted to access the wrong datacenter."


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("user", ["anystring", "python-mailchimp", ""])
def test_basic_with_any_user_name(api: ApiUser, make_client: ClientFactory, user: str) -> None:
    client = make_client(None)
    response = client.get("/3.0/ping", headers={"Authorization": basic(user, api.key)})
    assert assert_json(response) == {"health_status": "Everything's Chimpy!"}


def test_bearer(api: ApiUser, make_client: ClientFactory) -> None:
    client = make_client(None)
    for scheme in ("Bearer", "bearer"):
        response = client.get("/3.0/", headers={"Authorization": f"{scheme} {api.key}"})
        assert assert_json(response)["account_id"] == api.account_id


def test_missing_key(make_client: ClientFactory) -> None:
    client = make_client(None)
    for path in ("/3.0/ping", "/3.0/lists", "/3.0/lists/abc/members"):
        assert_problem(client.get(path), 401, "API Key Missing")
    assert_problem(client.post("/3.0/lists", json={}), 401, "API Key Missing")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer 0123456789abcdef0123456789abcdef-us1",
        basic("x", "0123456789abcdef0123456789abcdef-us1"),
        basic("x", "not-a-key"),
        basic("only-a-user", ""),
        "Basic !!!not-base64!!!",
        "Bearer ",
        "Digest abc",
        "Bearer ' OR 1=1 --",
    ],
)
def test_wrong_key(make_client: ClientFactory, header: str) -> None:
    response = make_client(None).get("/3.0/ping", headers={"Authorization": header})
    assert assert_problem(response, 401, "API Key Invalid")["detail"] == INVALID_DETAIL


@pytest.mark.parametrize(
    "header",
    [
        b"Basic \xe9\xe9\xe9\xe9",  # latin-1 bytes where base64 should be
        b"Basic \xff",
        b"Basic " + base64.b64encode(b"x:\xff\xfe"),  # base64 of bytes that are not UTF-8
        b"Bearer \xe9t\xe9",
        b"\xe9\xe9 abc",
        b"Basic\t\x80",
    ],
)
def test_a_non_ascii_authorization_header_is_an_invalid_key(
    make_client: ClientFactory, header: bytes
) -> None:
    # Header values reach the app as latin-1 text: any byte from 0x80 up arrives as is.
    response = make_client(None).get("/3.0/ping", headers=[(b"Authorization", header)])
    assert_problem(response, 401, "API Key Invalid")


def test_a_non_ascii_trigger_error_is_ignored(api: ApiUser) -> None:
    response = api.client.get("/3.0/ping", headers=[(b"X-Trigger-Error", b"API\xe9KeyMissing")])
    assert_json(response)


def test_key_of_another_datacenter_suffix_is_invalid(
    api: ApiUser, make_client: ClientFactory
) -> None:
    other_dc = api.key.rsplit("-", 1)[0] + "-us9"
    response = make_client(None).get("/3.0/ping", headers={"Authorization": f"Bearer {other_dc}"})
    assert_problem(response, 401, "API Key Invalid")


def test_revoked_key_stops_working(
    api: ApiUser, services: Services, make_client: ClientFactory, clock: OffsetClock
) -> None:
    assert_json(api.client.get("/3.0/ping"))  # now cached by this app's key cache
    with services.database.write() as conn:
        assert services.accounts.revoke_key(conn, api.key)
    # A fresh app has no cache: refused at once.
    assert_problem(make_client(api.key).get("/3.0/ping"), 401, "API Key Invalid")
    # The running app refuses it once its cache entry (a short TTL) has expired.
    clock.advance(3600)
    assert_problem(api.client.get("/3.0/ping"), 401, "API Key Invalid")


def test_second_key_of_an_account(
    api: ApiUser, services: Services, make_client: ClientFactory
) -> None:
    with services.database.write() as conn:
        second = services.accounts.create_key(conn, api.account_id, "us6")
    body = assert_json(make_client(second).get("/3.0/"))
    assert body["account_id"] == api.account_id


def test_root_is_the_account(api: ApiUser, services: Services) -> None:
    _, other_key = new_account_key(services)
    body = assert_json(api.client.get("/3.0/"))
    assert body["account_id"] == api.account_id
    assert {"account_id", "login_id", "account_name", "email", "_links"} <= set(body)
    assert other_key not in str(body)


@pytest.mark.parametrize(
    ("name", "status", "title"),
    [
        ("APIKeyMissing", 401, "API Key Missing"),
        ("APIKeyInvalid", 401, "API Key Invalid"),
        ("Forbidden", 403, "Forbidden"),
        ("ResourceNotFound", 404, "Resource Not Found"),
        ("MethodNotAllowed", 405, "Method Not Allowed"),
        ("TooManyRequests", 429, "TooManyRequests"),
        ("InternalServerError", 500, "InternalServerError"),
        ("JSONParseError", 400, "JSON Parse Exception"),
    ],
)
def test_trigger_error(api: ApiUser, name: str, status: int, title: str) -> None:
    response = api.client.get("/3.0/ping", headers={"X-Trigger-Error": name})
    assert_problem(response, status, title)


def test_trigger_error_writes_nothing(api: ApiUser) -> None:
    response = api.client.post(
        "/3.0/lists", json={}, headers={"X-Trigger-Error": "InternalServerError"}
    )
    assert_problem(response, 500)
    assert assert_json(api.client.get("/3.0/lists"))["total_items"] == 0


def test_unknown_trigger_is_ignored(api: ApiUser) -> None:
    response = api.client.get("/3.0/ping", headers={"X-Trigger-Error": "NoSuchError"})
    assert_json(response)
