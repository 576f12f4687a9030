"""`conveyor keys create|list|revoke` against the data dir of a running server."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.server import KEY_SHAPE, ServerProcess, run_cli

pytestmark = pytest.mark.e2e


def keys(server: ServerProcess, *args: str) -> tuple[int, str, str]:
    done = run_cli("keys", *args, "--data-dir", str(server.data_dir))
    return done.returncode, done.stdout, done.stderr


def account_id(server: ServerProcess, key: str) -> str:
    response = httpx.get(f"{server.api_url}/", auth=("anyone", key))
    assert response.status_code == 200, response.text
    return str(response.json()["account_id"])


def test_serve_prints_only_the_key_on_stdout(server: ServerProcess) -> None:
    assert server.stdout_path.read_text() == server.key + "\n"
    assert server.key.endswith("-us1")


def test_keys_create_while_the_server_runs(server: ServerProcess) -> None:
    code, out, _err = keys(server, "create", "--dc", "us7")
    assert code == 0
    key = out.removesuffix("\n")
    assert out == key + "\n"  # one key alone on stdout
    assert KEY_SHAPE.fullmatch(key)
    assert key.endswith("-us7")
    # A new account: it works at once and sees nothing of the first account.
    assert account_id(server, key) != account_id(server, server.key)
    httpx.post(
        f"{server.api_url}/lists",
        auth=("x", server.key),
        json={
            "name": "Private",
            "permission_reminder": "r",
            "email_type_option": False,
            "contact": {
                "company": "c",
                "address1": "a",
                "city": "c",
                "state": "s",
                "zip": "z",
                "country": "US",
            },
            "campaign_defaults": {
                "from_name": "f",
                "from_email": "f@example.org",
                "subject": "s",
                "language": "en",
            },
        },
    ).raise_for_status()
    other = httpx.get(f"{server.api_url}/lists", auth=("x", key)).json()
    assert other["total_items"] == 0


def test_keys_create_for_an_existing_account(server: ServerProcess) -> None:
    owner = account_id(server, server.key)
    code, out, err = keys(server, "create", "--account", owner)
    assert code == 0, err
    extra = out.strip()
    assert KEY_SHAPE.fullmatch(extra)
    assert extra != server.key
    assert account_id(server, extra) == owner

    code, out, err = keys(server, "create", "--account", "no-such-account")
    assert code != 0
    assert out == ""
    assert "no-such-account" in err


def test_keys_list_shows_hints_not_keys(server: ServerProcess) -> None:
    owner = account_id(server, server.key)
    _, second, _ = keys(server, "create", "--account", owner)
    code, out, _err = keys(server, "list")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert all(owner in line for line in lines)
    assert all("active" in line for line in lines)
    assert server.key not in out
    assert second.strip() not in out
    assert any(line.startswith(server.key[:4]) for line in lines)


def test_keys_revoke(server: ServerProcess) -> None:
    _, out, _ = keys(server, "create", "--account", account_id(server, server.key))
    doomed = out.strip()
    assert httpx.get(f"{server.api_url}/ping", auth=("x", doomed)).status_code == 200

    code, _out, _err = keys(server, "revoke", doomed)
    assert code == 0
    # The server caches resolved keys briefly: a revoked key stops working within seconds.
    deadline = time.monotonic() + 20
    while True:
        response = httpx.get(f"{server.api_url}/ping", auth=("x", doomed))
        if response.status_code == 401:
            break
        assert time.monotonic() < deadline, "the revoked key still works after 20 s"
        time.sleep(0.2)  # the poll interval
    assert response.json()["title"] == "API Key Invalid"
    assert httpx.get(f"{server.api_url}/ping", auth=("x", server.key)).status_code == 200

    _, listing, _ = keys(server, "list")
    assert sum("revoked" in line for line in listing.splitlines()) == 1

    code, _out, err = keys(server, "revoke", doomed)
    assert code != 0
    assert "no such active key" in err
